use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use std::time::Duration;

use super::*;

fn weak_argon2(password: &str, alg: Algorithm, m: u32, t: u32) -> String {
    let params = Params::new(m, t, 1, None).unwrap();
    let salt = SaltString::generate(&mut OsRng);
    Argon2::new(alg, Version::V0x13, params)
        .hash_password(password.as_bytes(), &salt)
        .unwrap()
        .to_string()
}

#[tokio::test]
async fn hash_is_argon2id_with_owasp_params() {
    let pool = PasswordHasherPool::new(1);
    let h = pool.hash("correct horse").await.unwrap();
    assert!(h.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{h}");
    assert_eq!(
        HashFormat::detect(&h),
        Some(HashFormat::Argon2 { current: true })
    );
    assert_eq!(
        pool.verify("correct horse", &h).await.unwrap(),
        Verification::Match {
            needs_rehash: false
        }
    );
    assert_eq!(
        pool.verify("wrong horse", &h).await.unwrap(),
        Verification::Mismatch
    );
    // Salted: the same password hashes differently each time.
    assert_ne!(h, pool.hash("correct horse").await.unwrap());
}

#[tokio::test]
async fn bcrypt_variants_verify_and_need_rehash() {
    let pool = PasswordHasherPool::new(1);
    let b = bcrypt::hash("legacy-pass", 4).unwrap();
    assert!(b.starts_with("$2b$04$"));
    for prefix in ["$2a$", "$2b$", "$2y$"] {
        let h = format!("{prefix}{}", &b[4..]);
        assert_eq!(HashFormat::detect(&h), Some(HashFormat::Bcrypt));
        assert_eq!(
            pool.verify("legacy-pass", &h).await.unwrap(),
            Verification::Match { needs_rehash: true },
            "{prefix}"
        );
        assert_eq!(
            pool.verify("legacy-pasS", &h).await.unwrap(),
            Verification::Mismatch
        );
    }
}

#[tokio::test]
async fn weaker_argon2_verifies_and_needs_rehash() {
    let pool = PasswordHasherPool::new(1);
    for h in [
        weak_argon2("pw123456", Algorithm::Argon2id, 4096, 3),
        weak_argon2("pw123456", Algorithm::Argon2id, 19456, 1),
        weak_argon2("pw123456", Algorithm::Argon2i, 19456, 2),
    ] {
        assert_eq!(
            HashFormat::detect(&h),
            Some(HashFormat::Argon2 { current: false }),
            "{h}"
        );
        assert_eq!(
            pool.verify("pw123456", &h).await.unwrap(),
            Verification::Match { needs_rehash: true },
            "{h}"
        );
        assert_eq!(
            pool.verify("pw1234567", &h).await.unwrap(),
            Verification::Mismatch
        );
    }
}

#[test]
fn plaintext_and_unknown_formats_are_not_hashes() {
    for h in [
        "hunter22",
        "",
        "$1$abc$def",
        "$2x$04$abcdefghijklmnopqrstuuABCDEFGHIJKLMNOPQRSTUVWXYZ01234",
        "$2b$04$short",
        "$argon2id$v=19$m=19456,t=2,p=1$",
        "5f4dcc3b5aa765d61d8327deb882cf99",
        // Parameters far beyond the ceiling (4 GiB).
        "$argon2id$v=19$m=4194304,t=2,p=1$c29tZXNhbHQ$RdescudvJCsgt3ub+b+dWRWJTmaaJObG",
    ] {
        assert_eq!(HashFormat::detect(h), None, "{h}");
    }
}

#[tokio::test]
async fn unsupported_stored_hash_is_a_mismatch() {
    let pool = PasswordHasherPool::new(1);
    assert_eq!(
        pool.verify("hunter22", "hunter22").await.unwrap(),
        Verification::Mismatch
    );
}

#[tokio::test]
async fn over_long_passwords_are_refused() {
    let pool = PasswordHasherPool::new(1);
    let long = "x".repeat(MAX_PASSWORD_BYTES + 1);
    assert!(matches!(
        pool.hash(&long).await,
        Err(PasswordError::TooLong)
    ));
    let h = pool.hash("short-enough").await.unwrap();
    assert_eq!(
        pool.verify(&long, &h).await.unwrap(),
        Verification::Mismatch
    );
}

/// The dummy verification costs what a real one costs, so response time does not reveal
/// whether the account exists: it verifies against a hash this pool made, with the same
/// algorithm, version and parameters as every stored hash. Checked on the hashes
/// themselves, not by timing (a timed assertion fails on a loaded machine).
#[tokio::test]
async fn dummy_verify_runs_the_same_argon2_work_as_a_real_one() {
    let pool = PasswordHasherPool::new(1);
    let real = pool.hash("real-password").await.unwrap();
    pool.verify_dummy("warm-up").await.unwrap();
    let dummy = pool.inner.dummy_hash().to_owned();
    let (real, dummy) = (
        PasswordHash::new(&real).unwrap(),
        PasswordHash::new(&dummy).unwrap(),
    );
    assert_eq!(dummy.algorithm, real.algorithm);
    assert_eq!(dummy.version, real.version);
    assert_eq!(
        Params::try_from(&dummy).unwrap(),
        Params::try_from(&real).unwrap()
    );
    assert_eq!(
        dummy.hash.map(|h| h.len()),
        real.hash.map(|h| h.len()),
        "the same output length is computed"
    );
    // And the dummy path really verifies (a mismatch, never a match).
    assert!(!argon2_verify(b"wrong", &dummy).unwrap());
}

#[tokio::test]
async fn pool_refuses_beyond_its_queue_instead_of_waiting() {
    let pool = PasswordHasherPool::with_limits(1, 2);
    let h = pool.hash("pw-for-queue").await.unwrap();
    let mut tasks = Vec::new();
    for _ in 0..6 {
        let pool = pool.clone();
        let h = h.clone();
        tasks.push(tokio::spawn(async move {
            pool.verify("pw-for-queue", &h).await
        }));
    }
    let mut ok = 0;
    let mut busy = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(v) => {
                assert!(v.is_match());
                ok += 1
            }
            Err(PasswordError::Busy) => busy += 1,
            Err(e) => panic!("{e}"),
        }
    }
    assert!(ok >= 1 && busy >= 1, "ok {ok} busy {busy}");
    assert_eq!(ok + busy, 6);
    // Once the flood is over the pool serves again.
    assert!(pool.verify("pw-for-queue", &h).await.unwrap().is_match());
}

/// Hashing runs off the async workers: a current-thread runtime keeps serving other
/// tasks while several hashes are in flight.
#[tokio::test(flavor = "current_thread")]
async fn hashing_does_not_block_the_async_worker() {
    let pool = PasswordHasherPool::new(1);
    let hashing = {
        let pool = pool.clone();
        tokio::spawn(async move {
            for _ in 0..3 {
                pool.hash("some password").await.unwrap();
            }
        })
    };
    let mut ticks = 0u32;
    while !hashing.is_finished() {
        tokio::time::sleep(Duration::from_millis(1)).await;
        ticks += 1;
    }
    assert!(ticks >= 5, "the runtime was blocked: only {ticks} ticks");
}

/// Hashes run on the pool's own long-lived threads (so the allocator reuses each thread's
/// 19 MiB block instead of leaving one behind per blocking thread), and a panicking job
/// neither kills them nor hangs its caller.
#[tokio::test]
async fn jobs_run_on_the_dedicated_threads_and_survive_a_panic() {
    let pool = PasswordHasherPool::new(2);
    for _ in 0..4 {
        let name = pool
            .run("test", |_| std::thread::current().name().map(str::to_owned))
            .await
            .unwrap();
        assert!(
            name.as_deref()
                .is_some_and(|n| n.starts_with("tollgate-hash-")),
            "ran on {name:?}"
        );
    }
    let panicked = pool.run("test", |_| -> () { panic!("boom") }).await;
    assert!(matches!(panicked, Err(PasswordError::Worker)));
    let h = pool.hash("still works").await.unwrap();
    assert!(pool.verify("still works", &h).await.unwrap().is_match());
}

/// Hashes made with the kept working memory are standard PHC argon2id strings: the
/// reference implementation verifies them, and a reference-made hash verifies here.
#[tokio::test]
async fn kept_memory_hashes_match_the_reference_implementation() {
    let pool = PasswordHasherPool::new(1);
    for pw in ["first password", "second, different password", ""] {
        let ours = pool.hash(pw).await.unwrap();
        let parsed = PasswordHash::new(&ours).unwrap();
        assert!(argon2::Argon2::default()
            .verify_password(pw.as_bytes(), &parsed)
            .is_ok());
        assert!(argon2::Argon2::default()
            .verify_password(b"wrong", &parsed)
            .is_err());
        let reference = argon2::Argon2::default()
            .hash_password(pw.as_bytes(), &SaltString::generate(&mut OsRng))
            .unwrap()
            .to_string();
        assert!(pool.verify(pw, &reference).await.unwrap().is_match());
        assert!(!pool.verify("wrong", &reference).await.unwrap().is_match());
    }
}
