//! SCRAM credentials: AlterUserScramCredentials, as Kafka's `ScramControlManager` decides it,
//! and the credentials a new cluster starts with. DescribeUserScramCredentials needs no
//! controller: brokers answer it from their image.

use std::collections::BTreeMap;

use runnel_security::scram::{ScramCredential, ScramMechanism, MAX_ITERATIONS, MIN_ITERATIONS};

use super::ControllerResult;
use crate::api::{
    AlterUserScramCredentialsRequest, AlterUserScramCredentialsResponse, ControllerError,
    ScramCredentialDeletion, ScramCredentialUpsertion,
};
use crate::image::MetadataImage;
use crate::records::{Record, RemoveUserScramCredentialRecord, UserScramCredentialRecord};

/// Applies each user's deletion or upsertion on its own: a user named more than once in the
/// request (in either list) gets DUPLICATE_RESOURCE and nothing changes for them.
pub fn alter_user_scram_credentials(
    image: &MetadataImage,
    req: &AlterUserScramCredentialsRequest,
) -> ControllerResult<AlterUserScramCredentialsResponse> {
    enum Op<'a> {
        Delete(&'a ScramCredentialDeletion),
        Upsert(&'a ScramCredentialUpsertion),
    }
    // Users in the order they first appear, with how often they appear.
    let mut order: Vec<(&str, Op<'_>)> = Vec::new();
    let mut count: BTreeMap<&str, usize> = BTreeMap::new();
    let ops = req
        .deletions
        .iter()
        .map(|d| (d.name.as_str(), Op::Delete(d)))
        .chain(
            req.upsertions
                .iter()
                .map(|u| (u.name.as_str(), Op::Upsert(u))),
        );
    for (name, op) in ops {
        let n = count.entry(name).or_insert(0);
        *n += 1;
        if *n == 1 {
            order.push((name, op));
        }
    }
    let mut records = Vec::new();
    let mut results = Vec::with_capacity(order.len());
    for (name, op) in order {
        let outcome = if count[name] > 1 {
            Err(ControllerError::DuplicateResource(
                "A user credential cannot be altered twice in the same request".into(),
            ))
        } else {
            match op {
                Op::Delete(d) => delete(image, d),
                Op::Upsert(u) => upsert(u),
            }
        };
        let result = match outcome {
            Ok(record) => {
                records.push(record);
                Ok(())
            }
            Err(e) => {
                tracing::debug!(user = name, error = %e, "SCRAM credential change refused");
                Err(e)
            }
        };
        results.push((name.to_string(), result));
    }
    ControllerResult::new(records, AlterUserScramCredentialsResponse { results })
}

fn mechanism(name: &str, kafka_type: i8) -> Result<ScramMechanism, ControllerError> {
    let mechanism = ScramMechanism::from_kafka_type(kafka_type).ok_or_else(|| {
        ControllerError::UnsupportedSaslMechanism("Unknown SCRAM mechanism".into())
    })?;
    if name.is_empty() {
        return Err(ControllerError::UnacceptableCredential(
            "Username must not be empty".into(),
        ));
    }
    Ok(mechanism)
}

fn delete(image: &MetadataImage, d: &ScramCredentialDeletion) -> Result<Record, ControllerError> {
    let mechanism = mechanism(&d.name, d.mechanism)?;
    if image.scram_credential(&d.name, mechanism).is_none() {
        return Err(ControllerError::ResourceNotFound(
            "Attempt to delete a user credential that does not exist".into(),
        ));
    }
    tracing::info!(user = %d.name, mechanism = mechanism.name(), "SCRAM credential deleted");
    Ok(Record::RemoveUserScramCredential(
        RemoveUserScramCredentialRecord {
            name: d.name.clone(),
            mechanism,
        },
    ))
}

fn upsert(u: &ScramCredentialUpsertion) -> Result<Record, ControllerError> {
    let mechanism = mechanism(&u.name, u.mechanism)?;
    let unacceptable = |m: &str| Err(ControllerError::UnacceptableCredential(m.into()));
    if u.iterations < MIN_ITERATIONS {
        return unacceptable("Too few iterations");
    }
    if u.iterations > MAX_ITERATIONS {
        return unacceptable("Too many iterations");
    }
    if u.salt.is_empty() {
        return unacceptable("Salt must not be empty");
    }
    if u.salted_password.is_empty() {
        return unacceptable("Salted password must not be empty");
    }
    let credential =
        ScramCredential::from_salted_password(mechanism, &u.salted_password, &u.salt, u.iterations);
    tracing::info!(
        user = %u.name,
        mechanism = mechanism.name(),
        iterations = u.iterations,
        "SCRAM credential set"
    );
    Ok(Record::UserScramCredential(UserScramCredentialRecord {
        name: u.name.clone(),
        mechanism,
        credential,
    }))
}

/// The records that give a new cluster its first credentials (`--add-scram`). The node
/// config was validated, so every one applies; a later entry for the same user and mechanism
/// replaces an earlier one.
pub fn bootstrap_credentials(
    credentials: &[(String, ScramMechanism, ScramCredential)],
) -> Vec<Record> {
    credentials
        .iter()
        .map(|(name, mechanism, credential)| {
            Record::UserScramCredential(UserScramCredentialRecord {
                name: name.clone(),
                mechanism: *mechanism,
                credential: credential.clone(),
            })
        })
        .collect()
}

/// Why a bootstrap credential could not be stored, if it could not.
pub fn check_bootstrap_credential(
    name: &str,
    mechanism: ScramMechanism,
    credential: &ScramCredential,
) -> Result<(), String> {
    if name.is_empty() {
        return Err(format!(
            "{} credential with an empty user name",
            mechanism.name()
        ));
    }
    if !(MIN_ITERATIONS..=MAX_ITERATIONS).contains(&credential.iterations) {
        return Err(format!(
            "{} credential of user {name:?}: iterations must be between {MIN_ITERATIONS} and \
             {MAX_ITERATIONS}, not {}",
            mechanism.name(),
            credential.iterations
        ));
    }
    if credential.salt.is_empty()
        || credential.stored_key.is_empty()
        || credential.server_key.is_empty()
    {
        return Err(format!(
            "{} credential of user {name:?} has an empty salt or key",
            mechanism.name()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::managers::testkit::apply_all;

    const SHA256: i8 = 1;
    const SHA512: i8 = 2;

    fn upsertion(name: &str, mechanism: i8, iterations: i32) -> ScramCredentialUpsertion {
        ScramCredentialUpsertion {
            name: name.into(),
            mechanism,
            iterations,
            salt: b"salt-of-the-earth".to_vec(),
            salted_password: vec![7; 32],
        }
    }

    fn deletion(name: &str, mechanism: i8) -> ScramCredentialDeletion {
        ScramCredentialDeletion {
            name: name.into(),
            mechanism,
        }
    }

    fn alter(
        image: &MetadataImage,
        deletions: Vec<ScramCredentialDeletion>,
        upsertions: Vec<ScramCredentialUpsertion>,
    ) -> ControllerResult<AlterUserScramCredentialsResponse> {
        alter_user_scram_credentials(
            image,
            &AlterUserScramCredentialsRequest {
                deletions,
                upsertions,
            },
        )
    }

    fn errors(res: &ControllerResult<AlterUserScramCredentialsResponse>) -> Vec<(&str, String)> {
        res.response
            .results
            .iter()
            .map(|(user, r)| {
                let what = match r {
                    Ok(()) => "ok".to_string(),
                    Err(e) => format!("{e:?}"),
                };
                (user.as_str(), what)
            })
            .collect()
    }

    #[test]
    fn upserts_store_the_derived_keys_not_the_password() {
        let image = MetadataImage::new();
        let res = alter(&image, vec![], vec![upsertion("alice", SHA512, 8192)]);
        assert_eq!(errors(&res), [("alice", "ok".to_string())]);
        let next = apply_all(&image, &res.records);
        let stored = next
            .scram_credential("alice", ScramMechanism::Sha512)
            .unwrap();
        let want = ScramCredential::from_salted_password(
            ScramMechanism::Sha512,
            &[7; 32],
            b"salt-of-the-earth",
            8192,
        );
        assert_eq!(stored, &want);
        assert_ne!(stored.stored_key, vec![7; 32]);
        assert!(next
            .scram_credential("alice", ScramMechanism::Sha256)
            .is_none());
        assert_eq!(
            next.scram_users().collect::<Vec<_>>(),
            [("alice", ScramMechanism::Sha512, 8192)]
        );
        // Replacing it is an upsert too.
        let res = alter(&next, vec![], vec![upsertion("alice", SHA512, 4096)]);
        let next = apply_all(&next, &res.records);
        assert_eq!(
            next.scram_users().collect::<Vec<_>>(),
            [("alice", ScramMechanism::Sha512, 4096)]
        );
    }

    #[test]
    fn each_user_gets_its_own_error() {
        let image = MetadataImage::new();
        let res = alter(
            &image,
            vec![deletion("ghost", SHA256), deletion("", SHA256)],
            vec![
                upsertion("few", SHA256, MIN_ITERATIONS - 1),
                upsertion("many", SHA256, MAX_ITERATIONS + 1),
                upsertion("odd", 3, 4096),
                upsertion("unknown", 0, 4096),
                upsertion("ok", SHA256, MAX_ITERATIONS),
                ScramCredentialUpsertion {
                    salt: vec![],
                    ..upsertion("nosalt", SHA256, 4096)
                },
                ScramCredentialUpsertion {
                    salted_password: vec![],
                    ..upsertion("nopassword", SHA256, 4096)
                },
            ],
        );
        let e = errors(&res);
        let users: Vec<&str> = e.iter().map(|(u, _)| *u).collect();
        assert_eq!(
            users,
            [
                "ghost",
                "",
                "few",
                "many",
                "odd",
                "unknown",
                "ok",
                "nosalt",
                "nopassword"
            ]
        );
        let r = &res.response.results;
        assert!(matches!(&r[0].1, Err(ControllerError::ResourceNotFound(m))
            if m == "Attempt to delete a user credential that does not exist"));
        assert!(
            matches!(&r[1].1, Err(ControllerError::UnacceptableCredential(m))
            if m == "Username must not be empty")
        );
        assert!(
            matches!(&r[2].1, Err(ControllerError::UnacceptableCredential(m))
            if m == "Too few iterations")
        );
        assert!(
            matches!(&r[3].1, Err(ControllerError::UnacceptableCredential(m))
            if m == "Too many iterations")
        );
        assert!(
            matches!(&r[4].1, Err(ControllerError::UnsupportedSaslMechanism(m))
            if m == "Unknown SCRAM mechanism")
        );
        assert!(matches!(
            &r[5].1,
            Err(ControllerError::UnsupportedSaslMechanism(_))
        ));
        assert!(r[6].1.is_ok());
        assert!(matches!(
            &r[7].1,
            Err(ControllerError::UnacceptableCredential(_))
        ));
        assert!(matches!(
            &r[8].1,
            Err(ControllerError::UnacceptableCredential(_))
        ));
        assert_eq!(res.records.len(), 1);
        let next = apply_all(&image, &res.records);
        assert!(next
            .scram_credential("ok", ScramMechanism::Sha256)
            .is_some());
    }

    #[test]
    fn an_unknown_mechanism_beats_an_empty_name() {
        let res = alter(&MetadataImage::new(), vec![deletion("", 9)], vec![]);
        assert!(matches!(
            &res.response.results[0].1,
            Err(ControllerError::UnsupportedSaslMechanism(_))
        ));
    }

    #[test]
    fn a_user_named_twice_is_a_duplicate_whatever_the_mechanisms() {
        let image = MetadataImage::new();
        let res = alter(
            &image,
            vec![],
            vec![
                upsertion("alice", SHA256, 4096),
                upsertion("bob", SHA256, 4096),
            ],
        );
        let image = apply_all(&image, &res.records);
        let res = alter(
            &image,
            vec![deletion("alice", SHA256), deletion("bob", SHA256)],
            vec![
                upsertion("alice", SHA512, 4096),
                upsertion("carol", SHA256, 4096),
                upsertion("carol", SHA512, 4096),
                upsertion("carol", SHA512, 1),
            ],
        );
        let dup = |r: &Result<(), ControllerError>| {
            matches!(r, Err(ControllerError::DuplicateResource(m))
                if m == "A user credential cannot be altered twice in the same request")
        };
        let r = &res.response.results;
        assert_eq!(r.len(), 3);
        assert_eq!(r[0].0, "alice");
        assert!(dup(&r[0].1));
        assert_eq!(r[1], ("bob".to_string(), Ok(())));
        assert_eq!(r[2].0, "carol");
        assert!(dup(&r[2].1));
        let next = apply_all(&image, &res.records);
        assert!(next
            .scram_credential("alice", ScramMechanism::Sha256)
            .is_some());
        assert!(next
            .scram_credential("bob", ScramMechanism::Sha256)
            .is_none());
        assert_eq!(next.scram_users().count(), 1);
    }

    #[test]
    fn deleting_one_mechanism_keeps_the_other() {
        let image = MetadataImage::new();
        let res = alter(&image, vec![], vec![upsertion("alice", SHA256, 4096)]);
        let image = apply_all(&image, &res.records);
        let res = alter(&image, vec![], vec![upsertion("alice", SHA512, 4096)]);
        let image = apply_all(&image, &res.records);
        let res = alter(&image, vec![deletion("alice", SHA256)], vec![]);
        assert_eq!(res.response.results, [("alice".to_string(), Ok(()))]);
        let image = apply_all(&image, &res.records);
        assert_eq!(
            image.scram_users().collect::<Vec<_>>(),
            [("alice", ScramMechanism::Sha512, 4096)]
        );
        // Deleting it again is RESOURCE_NOT_FOUND.
        let res = alter(&image, vec![deletion("alice", SHA256)], vec![]);
        assert!(matches!(
            &res.response.results[0].1,
            Err(ControllerError::ResourceNotFound(_))
        ));
        assert!(res.records.is_empty());
    }

    #[test]
    fn bootstrap_credentials_apply_and_are_checked() {
        let good = ScramCredential::from_password(ScramMechanism::Sha256, "pw", b"salt", 4096);
        assert!(check_bootstrap_credential("admin", ScramMechanism::Sha256, &good).is_ok());
        assert!(check_bootstrap_credential("", ScramMechanism::Sha256, &good).is_err());
        let few = ScramCredential {
            iterations: 10,
            ..good.clone()
        };
        assert!(check_bootstrap_credential("admin", ScramMechanism::Sha256, &few).is_err());
        let records = bootstrap_credentials(&[
            ("admin".into(), ScramMechanism::Sha256, good.clone()),
            ("admin".into(), ScramMechanism::Sha512, good.clone()),
        ]);
        let image = apply_all(&MetadataImage::new(), &records);
        assert_eq!(image.scram_users().count(), 2);
        assert_eq!(
            image.scram_credential("admin", ScramMechanism::Sha256),
            Some(&good)
        );
    }
}
