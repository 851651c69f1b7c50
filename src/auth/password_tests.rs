//! Tests of argon2id hashing (RFC 9106), config hash validation, the bounded verifier
//! (busy instead of unbounded queueing, dummy work for unknown users) and password input.

use super::*;
use std::io::Cursor;
use std::time::{Duration, Instant};

/// Cheap parameters so debug-build tests stay fast; the code paths are the same.
const CHEAP: HashParams = HashParams {
    m_cost: 64,
    t_cost: 1,
    p_cost: 1,
};

fn cheap_hash(password: &str) -> String {
    hash_password_with(password, CHEAP).unwrap()
}

#[test]
fn owasp_hash_is_a_valid_argon2id_phc_string() {
    let phc = hash_password("correct horse").unwrap();
    assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{phc}");
    assert_eq!(validate_hash(&phc), Ok(HashParams::OWASP));
    // One OWASP-priced verification (slow in debug builds); wrong passwords are tested cheaply.
    assert!(verify_password_blocking("correct horse", &phc));
}

#[test]
fn salts_differ_between_hashes() {
    assert_ne!(cheap_hash("same"), cheap_hash("same"));
}

#[test]
fn empty_and_oversized_passwords_are_refused() {
    assert_eq!(hash_password(""), Err(PasswordError::Empty));
    let long = "x".repeat(MAX_PASSWORD_BYTES + 1);
    assert_eq!(
        hash_password_with(&long, CHEAP),
        Err(PasswordError::TooLong)
    );
    assert!(hash_password_with(&"x".repeat(MAX_PASSWORD_BYTES), CHEAP).is_ok());
    assert!(!verify_password_blocking("", &cheap_hash("x")));
}

#[test]
fn the_dummy_hash_is_valid_and_owasp_priced() {
    assert_eq!(validate_hash(DUMMY_HASH), Ok(HashParams::OWASP));
}

#[test]
fn validate_hash_rejects_unusable_config_values() {
    let good = cheap_hash("pw");
    assert_eq!(validate_hash(&good), Ok(CHEAP));
    assert!(!CHEAP.is_at_least_owasp());
    assert!(HashParams::OWASP.is_at_least_owasp());
    for bad in [
        "",
        "hunter2",
        "$argon2id$",
        "$argon2id$v=19$m=19456,t=2,p=1$",
        "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$",
        "$2b$12$abcdefghijklmnopqrstuuJ9cIqR2qGfGd0oGOcvGmfpWcwZ6y",
        "$argon2id$v=19$m=notanumber,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNo",
    ] {
        assert!(validate_hash(bad).is_err(), "{bad:?}");
    }
    let argon2i = good.replacen("$argon2id$", "$argon2i$", 1);
    assert_eq!(
        validate_hash(&argon2i),
        Err(InvalidHash::WrongAlgorithm("argon2i".into()))
    );
    let v16 = good.replacen("v=19", "v=16", 1);
    assert_eq!(validate_hash(&v16), Err(InvalidHash::WrongVersion));
    let huge = good.replacen("m=64", "m=4194304", 1);
    assert!(matches!(validate_hash(&huge), Err(InvalidHash::Params(_))));
    // A hash that is not argon2id never verifies, even when it would match.
    assert!(!verify_password_blocking("pw", &argon2i));
}

#[tokio::test]
async fn verifier_accepts_the_right_password_only() {
    let phc = cheap_hash("s3cret");
    let v =
        PasswordVerifier::with_dummy_hash(VerifierLimits::default(), &cheap_hash("dummy")).unwrap();
    assert_eq!(v.verify("s3cret", Some(&phc)).await, Ok(true));
    assert_eq!(v.verify("s3cret ", Some(&phc)).await, Ok(false));
    assert_eq!(v.verify("", Some(&phc)).await, Ok(false));
    assert_eq!(v.verify("s3cret", Some("garbage")).await, Ok(false));
    assert_eq!(v.in_flight(), 0);
}

#[tokio::test]
async fn unknown_user_is_false_even_with_the_dummy_password() {
    // The dummy's own password must not log anyone in as an unknown user.
    let dummy = cheap_hash("dummy-password");
    let v = PasswordVerifier::with_dummy_hash(VerifierLimits::default(), &dummy).unwrap();
    assert_eq!(v.verify("dummy-password", None).await, Ok(false));
    assert!(PasswordVerifier::with_dummy_hash(VerifierLimits::default(), "nope").is_err());
}

#[tokio::test]
async fn unknown_user_costs_as_much_as_a_wrong_password() {
    // Counted, not timed: an unknown user runs one argon2 verification with the same
    // parameters as a known user's wrong password.
    let params = HashParams {
        m_cost: 2048,
        t_cost: 2,
        p_cost: 1,
    };
    let dummy = hash_password_with("dummy", params).unwrap();
    let real = hash_password_with("real", params).unwrap();
    assert_eq!(
        validate_hash(&dummy).unwrap(),
        validate_hash(&real).unwrap()
    );
    let v = PasswordVerifier::with_dummy_hash(VerifierLimits::default(), &dummy).unwrap();
    assert_eq!(v.verify("wrong", Some(&real)).await, Ok(false));
    assert_eq!(v.computed(), 1);
    assert_eq!(v.verify("wrong", None).await, Ok(false));
    assert_eq!(
        v.computed(),
        2,
        "an unknown user costs one full argon2 verification"
    );
    assert_eq!(v.verify("dummy", None).await, Ok(false));
    assert_eq!(v.computed(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_fails_fast_with_busy() {
    let hash = cheap_hash("pw");
    let limits = VerifierLimits {
        max_concurrent: 1,
        max_waiting: 1,
    };
    let v = PasswordVerifier::with_dummy_hash(limits, &cheap_hash("d")).unwrap();
    // Hold the only worker slot, so both verifications below stay admitted and waiting for
    // as long as the test needs, whatever the machine's load.
    let slot = v.occupy_slot().await;
    let (a, b) = (v.clone(), v.clone());
    let (h1, h2) = (hash.clone(), hash.clone());
    let first = tokio::spawn(async move { a.verify("pw", Some(&h1)).await });
    let second = tokio::spawn(async move { b.verify("pw", Some(&h2)).await });
    let deadline = Instant::now() + Duration::from_secs(30);
    while v.in_flight() < 2 {
        assert!(
            Instant::now() < deadline,
            "verifications never got admitted"
        );
        tokio::task::yield_now().await;
    }
    let computed_before = v.computed();
    assert_eq!(v.verify("pw", Some(&hash)).await, Err(VerifyError::Busy));
    assert_eq!(
        v.computed(),
        computed_before,
        "a refused verification does no work"
    );
    assert!(
        !first.is_finished() && !second.is_finished(),
        "busy must not wait"
    );
    drop(slot);
    assert_eq!(first.await.unwrap(), Ok(true));
    assert_eq!(second.await.unwrap(), Ok(true));
    assert_eq!(v.in_flight(), 0);
    // Capacity is back once the work is done.
    assert_eq!(v.verify("pw", Some(&hash)).await, Ok(true));
}

/// Polls `fut` once, without waiting: how a caller that gives up looks to the verifier.
async fn poll_once<F: std::future::Future + Unpin>(fut: &mut F) -> std::task::Poll<F::Output> {
    std::future::poll_fn(|cx| std::task::Poll::Ready(std::pin::Pin::new(&mut *fut).poll(cx))).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_caller_still_releases_its_slot() {
    let slow = hash_password_with(
        "pw",
        HashParams {
            m_cost: 4096,
            t_cost: 4,
            p_cost: 1,
        },
    )
    .unwrap();
    let limits = VerifierLimits {
        max_concurrent: 1,
        max_waiting: 0,
    };
    let v = PasswordVerifier::with_dummy_hash(limits, &cheap_hash("d")).unwrap();

    // Given up while queued: the admission goes with the caller.
    let slot = v.occupy_slot().await;
    let mut queued = Box::pin(v.verify("pw", Some(&slow)));
    assert!(
        poll_once(&mut queued).await.is_pending(),
        "waits for the slot"
    );
    assert_eq!(v.in_flight(), 1);
    assert_eq!(
        v.verify("pw", Some(&slow)).await,
        Err(VerifyError::Busy),
        "the queue (of one) is full"
    );
    drop(queued);
    assert_eq!(v.in_flight(), 0, "released at once");

    // Given up while the hash runs: the work finishes on its blocking thread, then releases
    // the slot and the admission.
    let mut running = Box::pin(v.verify("pw", Some(&slow)));
    assert!(poll_once(&mut running).await.is_pending());
    drop(slot);
    assert!(
        poll_once(&mut running).await.is_pending(),
        "has the slot and waits for the hash"
    );
    drop(running);
    let deadline = Instant::now() + Duration::from_secs(30);
    while v.in_flight() > 0 {
        assert!(Instant::now() < deadline, "slot never released");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(
        v.computed(),
        1,
        "the abandoned verification ran: the caller left mid-work, not before it"
    );
    assert_eq!(v.verify("pw", Some(&cheap_hash("pw"))).await, Ok(true));
}

#[test]
fn password_line_strips_only_the_line_ending() {
    let read = |input: &[u8]| {
        read_password_line(Cursor::new(input.to_vec())).map(|s| s.expose().to_owned())
    };
    assert_eq!(read(b"hunter2\n").unwrap(), "hunter2");
    assert_eq!(read(b"hunter2\r\n").unwrap(), "hunter2");
    assert_eq!(read(b"hunter2").unwrap(), "hunter2");
    assert_eq!(read(b" spaced out \n").unwrap(), " spaced out ");
    assert_eq!(read(b"first\nsecond\n").unwrap(), "first");
    assert_eq!(read(b"tab\there\n").unwrap(), "tab\there");
    assert_eq!(read("pässwörd\n".as_bytes()).unwrap(), "pässwörd");
    assert_eq!(read(b"a\r\r\n").unwrap(), "a\r");
}

#[test]
fn password_line_errors() {
    let read = |input: &[u8]| read_password_line(Cursor::new(input.to_vec()));
    assert!(matches!(read(b""), Err(PasswordInputError::Empty)));
    assert!(matches!(read(b"\n"), Err(PasswordInputError::Empty)));
    assert!(matches!(read(b"\r\n"), Err(PasswordInputError::Empty)));
    assert!(matches!(
        read(b"\xff\xfe\n"),
        Err(PasswordInputError::NotUtf8)
    ));
    let mut long = vec![b'x'; MAX_PASSWORD_BYTES + 1];
    long.push(b'\n');
    assert!(matches!(read(&long), Err(PasswordInputError::TooLong)));
    let mut max = vec![b'x'; MAX_PASSWORD_BYTES];
    max.extend_from_slice(b"\r\n");
    assert_eq!(read(&max).unwrap().expose().len(), MAX_PASSWORD_BYTES);
}

proptest::proptest! {
    #[test]
    fn password_line_round_trips(pw in "[^\r\n]{1,100}", crlf in proptest::bool::ANY) {
        let ending = if crlf { "\r\n" } else { "\n" };
        let input = format!("{pw}{ending}");
        let got = read_password_line(Cursor::new(input.into_bytes())).unwrap();
        proptest::prop_assert_eq!(got.expose(), pw.as_str());
    }

    #[test]
    fn validate_hash_never_panics(s in ".{0,200}") {
        let _ = validate_hash(&s);
        let _ = verify_password_blocking("pw", &s);
    }
}

#[test]
fn kept_working_memory_gives_the_same_answers_as_argon2s_own_verifier() {
    use argon2::password_hash::PasswordVerifier as _;
    let small = cheap_hash("right");
    let larger = hash_password_with(
        "right",
        HashParams {
            m_cost: 256,
            ..CHEAP
        },
    )
    .unwrap();
    let mut memory = Vec::new();
    for (phc, blocks_after) in [(&small, 64), (&larger, 256), (&small, 256)] {
        let own = |pw: &str| {
            Argon2::default()
                .verify_password(pw.as_bytes(), &PasswordHash::new(phc).unwrap())
                .is_ok()
        };
        for pw in ["right", "wrong", "righ", "right "] {
            assert_eq!(
                verify_with_memory(pw, phc, &mut memory),
                own(pw),
                "{pw} {phc}"
            );
        }
        // Grown to the largest m_cost seen, never shrunk; zeroed after each use.
        assert_eq!(memory.len(), blocks_after);
        assert!(memory.iter().all(|b| b.as_ref().iter().all(|w| *w == 0)));
    }
    assert!(!verify_with_memory(
        "right",
        "$argon2id$v=19$m=64,t=1,p=1$bad",
        &mut memory
    ));
}

#[tokio::test]
async fn the_verifier_keeps_one_working_memory_per_concurrent_verification() {
    let verifier = PasswordVerifier::with_dummy_hash(
        VerifierLimits {
            max_concurrent: 2,
            max_waiting: 32,
        },
        &cheap_hash("dummy"),
    )
    .unwrap();
    let phc = cheap_hash("pw");
    let runs = (0..12).map(|i| {
        let verifier = verifier.clone();
        let phc = phc.clone();
        async move {
            let stored = (i % 3 != 0).then_some(phc.as_str());
            verifier
                .verify(if i % 2 == 0 { "pw" } else { "no" }, stored)
                .await
        }
    });
    let answers = futures_util::future::join_all(runs).await;
    for (i, answer) in answers.into_iter().enumerate() {
        assert_eq!(answer, Ok(i % 3 != 0 && i % 2 == 0), "run {i}");
    }
    let kept = verifier.inner.memory.lock().unwrap();
    assert!((1..=2).contains(&kept.len()), "{} buffers kept", kept.len());
    assert!(kept.iter().all(|m| m.len() == 64));
}
