//! The API versions Runnel implements.
