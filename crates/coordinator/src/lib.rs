//! Runnel's coordinators as I/O-free state machines.
//!
//! A coordinator owns the state kept in one partition of an internal topic: the classic
//! consumer group protocol and committed offsets ([`group`], over `__consumer_offsets`), and
//! transactions ([`txn`], over `__transaction_state`: producer ids and epochs, the state of each
//! transaction, and the markers that end it).
//! Each is a state machine that takes requests, replayed records and the time as inputs and
//! gives back answers and the records to persist; the broker crate runs it (loads it when its
//! node leads the partition, writes its records with acks=all, delivers its answers once they
//! are replicated, and drives its timers).
//!
//! Architecture invariant: nothing in this crate performs I/O or reads a clock (time comes in as
//! arguments; new member ids are random); it depends on no other Runnel crate.

pub mod group;
pub mod partitioning;
pub mod txn;
