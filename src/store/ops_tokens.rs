//! Code redemption, grants, refresh-token rotation and access-token revocations (SPEC §3.1),
//! written once for both engines. The races are decided by conditional single-row `UPDATE`s
//! (`... WHERE used_at IS NULL`, `... WHERE rotated_at IS NULL`) inside a write transaction:
//! SQLite serialises writers (`BEGIN IMMEDIATE`), PostgreSQL re-checks the `WHERE` after the
//! row lock is released, so exactly one caller sees a row come back. Redemptions and rotations
//! are applied by the store's group-commit writer (`store/group_commit.rs`), several to a
//! transaction, each exactly as it would run alone.

pub(crate) const GRANT_COLS: &str =
    "id, user_name, client_id, scope, create_time, expire_time, revoked_at";

// The statements below are constants (their column lists spelled out as in the `*_COLS`
// above) so that each is one cached prepared statement per connection.

pub(crate) const GET_CODE: &str = "SELECT hash, client_id, user_name, redirect_uri, scope, \
    code_challenge, code_challenge_method, create_time, expire_time, used_at, grant_id \
    FROM auth_codes WHERE hash = $1";

pub(crate) const GET_REFRESH: &str = "SELECT hash, grant_id, generation, parent_hash, \
    create_time, expire_time, rotated_at, successor_hash, revoked_at, access_jti, \
    access_expire_time FROM refresh_tokens WHERE hash = $1";

/// A refresh token with its grant's columns (prefixed `g_`).
pub(crate) const GET_REFRESH_AND_GRANT: &str = "SELECT t.hash, t.grant_id, t.generation, \
    t.parent_hash, t.create_time, t.expire_time, t.rotated_at, t.successor_hash, t.revoked_at, \
    t.access_jti, t.access_expire_time, g.user_name AS g_user_name, g.client_id AS g_client_id, \
    g.scope AS g_scope, g.create_time AS g_create_time, g.expire_time AS g_expire_time, \
    g.revoked_at AS g_revoked_at FROM refresh_tokens t JOIN grants g ON g.id = t.grant_id \
    WHERE t.hash = $1";

/// Snapshot = not revoked, and its app exists and is active.
pub(crate) const GRANT_LIVE: &str = "SELECT 1 FROM grants g JOIN apps a ON a.client_id = \
    g.client_id WHERE g.id = $1 AND g.revoked_at IS NULL AND a.active";

/// The app's scopes for a live access token (grant `$1`, `jti` `$2`): no row when the grant
/// or the app is not live or the token was revoked.
pub(crate) const LIVE_TOKEN_APP_SCOPES: &str = "SELECT a.scopes FROM grants g JOIN apps a \
    ON a.client_id = g.client_id WHERE g.id = $1 AND g.revoked_at IS NULL AND a.active \
    AND NOT EXISTS (SELECT 1 FROM token_revocations WHERE jti = $2)";

/// A redemption in one round trip (parameters: `$1` code hash, `$2` now, `$3` the new grant's
/// id, `$4` the grant's expiry, `$5`–`$8` the first refresh token's hash, expiry, access jti
/// and access expiry): the conditional UPDATE wins the code for grant `$3` if it is unused,
/// unexpired and its app active, and the grant and refresh token are inserted only where it
/// did. Returns the code's row when it won, nothing otherwise. SQLite runs the three
/// statements in one call; PostgreSQL, which prepares one statement at a time, as CTEs.
pub(crate) const SQLITE_REDEEM: &str = "UPDATE auth_codes SET used_at = $2, grant_id = $3 \
    WHERE hash = $1 AND used_at IS NULL AND expire_time > $2 \
    AND client_id IN (SELECT client_id FROM apps WHERE active) \
    RETURNING hash, client_id, user_name, redirect_uri, scope, code_challenge, \
    code_challenge_method, create_time, expire_time, used_at, grant_id; \
    INSERT INTO grants (id, user_name, client_id, scope, create_time, expire_time) \
    SELECT $3, user_name, client_id, scope, $2, $4 FROM auth_codes \
    WHERE hash = $1 AND grant_id = $3; \
    INSERT INTO refresh_tokens (hash, grant_id, generation, parent_hash, create_time, \
    expire_time, access_jti, access_expire_time) \
    SELECT $5, $3, 1, NULL, $2, $6, $7, $8 FROM auth_codes WHERE hash = $1 AND grant_id = $3";

pub(crate) const POSTGRES_REDEEM: &str = "WITH won AS (UPDATE auth_codes \
    SET used_at = $2, grant_id = $3 \
    WHERE hash = $1 AND used_at IS NULL AND expire_time > $2 \
    AND client_id IN (SELECT client_id FROM apps WHERE active) \
    RETURNING hash, client_id, user_name, redirect_uri, scope, code_challenge, \
    code_challenge_method, create_time, expire_time, used_at, grant_id), \
    g AS (INSERT INTO grants (id, user_name, client_id, scope, create_time, expire_time) \
    SELECT $3, user_name, client_id, scope, $2, $4 FROM won RETURNING id), \
    r AS (INSERT INTO refresh_tokens (hash, grant_id, generation, parent_hash, create_time, \
    expire_time, access_jti, access_expire_time) \
    SELECT $5, id, 1, NULL, $2, $6, $7, $8 FROM g) \
    SELECT * FROM won";

/// A rotation in one round trip (parameters: `$1` old hash, `$2` now, `$3` new hash, `$4` the
/// client, `$5`–`$7` the new token's expiry, access jti and access expiry, `$8` the grant's
/// new expiry): the conditional UPDATE rotates `$1` if it is current, unexpired, and its grant
/// and app live and the client's; only where it did (the old token now names `$3` as its
/// successor) the new token is inserted, the old token's access token recorded as revoked
/// (if it has not expired) and the grant extended. Returns the old token's `grant_id`,
/// `generation`, `access_jti`, `access_expire_time` with the extended grant's columns, or
/// nothing. The grant check is a correlated `EXISTS` on the token's own grant (a primary-key
/// lookup), not `grant_id IN (SELECT … WHERE client_id = …)`, which walked every grant of the
/// client (~10 ms at 7k grants).
pub(crate) const SQLITE_ROTATE: &str = "UPDATE refresh_tokens \
    SET rotated_at = $2, successor_hash = $3 \
    WHERE hash = $1 AND rotated_at IS NULL AND revoked_at IS NULL AND expire_time > $2 \
    AND EXISTS (SELECT 1 FROM grants g JOIN apps a ON a.client_id = g.client_id \
    WHERE g.id = refresh_tokens.grant_id AND g.revoked_at IS NULL AND a.active \
    AND g.client_id = $4); \
    INSERT INTO refresh_tokens (hash, grant_id, generation, parent_hash, create_time, \
    expire_time, access_jti, access_expire_time) \
    SELECT $3, grant_id, generation + 1, $1, $2, $5, $6, $7 FROM refresh_tokens \
    WHERE hash = $1 AND successor_hash = $3; \
    INSERT INTO token_revocations (jti, grant_id, expire_time, revoked_at) \
    SELECT access_jti, grant_id, access_expire_time, $2 FROM refresh_tokens \
    WHERE hash = $1 AND successor_hash = $3 AND access_jti IS NOT NULL \
    AND access_expire_time > $2 ON CONFLICT (jti) DO NOTHING; \
    UPDATE grants SET expire_time = CASE WHEN expire_time < $8 THEN $8 ELSE expire_time END \
    WHERE id = (SELECT grant_id FROM refresh_tokens WHERE hash = $1 AND successor_hash = $3); \
    SELECT t.grant_id, t.generation, t.access_jti, t.access_expire_time, g.id, g.user_name, \
    g.client_id, g.scope, g.create_time, g.expire_time, g.revoked_at \
    FROM refresh_tokens t JOIN grants g ON g.id = t.grant_id \
    WHERE t.hash = $1 AND t.successor_hash = $3";

pub(crate) const POSTGRES_ROTATE: &str = "WITH old AS (UPDATE refresh_tokens \
    SET rotated_at = $2, successor_hash = $3 \
    WHERE hash = $1 AND rotated_at IS NULL AND revoked_at IS NULL AND expire_time > $2 \
    AND EXISTS (SELECT 1 FROM grants g JOIN apps a ON a.client_id = g.client_id \
    WHERE g.id = refresh_tokens.grant_id AND g.revoked_at IS NULL AND a.active \
    AND g.client_id = $4) \
    RETURNING grant_id, generation, access_jti, access_expire_time), \
    ins AS (INSERT INTO refresh_tokens (hash, grant_id, generation, parent_hash, create_time, \
    expire_time, access_jti, access_expire_time) \
    SELECT $3, grant_id, generation + 1, $1, $2, $5, $6, $7 FROM old), \
    rev AS (INSERT INTO token_revocations (jti, grant_id, expire_time, revoked_at) \
    SELECT access_jti, grant_id, access_expire_time, $2 FROM old \
    WHERE access_jti IS NOT NULL AND access_expire_time > $2 ON CONFLICT (jti) DO NOTHING), \
    g AS (UPDATE grants SET expire_time = GREATEST(grants.expire_time, $8) FROM old \
    WHERE grants.id = old.grant_id RETURNING grants.id, grants.user_name, grants.client_id, \
    grants.scope, grants.create_time, grants.expire_time, grants.revoked_at) \
    SELECT old.grant_id, old.generation, old.access_jti, old.access_expire_time, g.id, \
    g.user_name, g.client_id, g.scope, g.create_time, g.expire_time, g.revoked_at \
    FROM old, g";

/// Why a rotation did not happen (read after the conditional UPDATE matched nothing).
pub(crate) const ROTATE_DIAGNOSE: &str = "SELECT t.grant_id, t.rotated_at, t.revoked_at, \
    t.expire_time, g.client_id, g.revoked_at AS grant_revoked_at, \
    CAST(CASE WHEN a.active THEN 1 ELSE 0 END AS BIGINT) AS app_active, \
    CAST(CASE WHEN EXISTS (SELECT 1 FROM refresh_tokens s WHERE s.hash = t.successor_hash \
    AND s.rotated_at IS NULL AND s.revoked_at IS NULL) THEN 1 ELSE 0 END AS BIGINT) \
    AS successor_current FROM refresh_tokens t JOIN grants g ON g.id = t.grant_id \
    LEFT JOIN apps a ON a.client_id = g.client_id WHERE t.hash = $1";

pub(crate) const INSERT_REVOCATION: &str = "INSERT INTO token_revocations (jti, grant_id, \
    expire_time, revoked_at) VALUES ($1, $2, $3, $4) ON CONFLICT (jti) DO NOTHING";

/// The later of a refresh token's and its access token's expiry.
pub(crate) fn issued_until(t: &super::NewRefreshToken) -> i64 {
    let r = super::codec::micros(t.expire_time);
    t.access_expire_time
        .map_or(r, |a| r.max(super::codec::micros(a)))
}

macro_rules! tokens_ops {
    ($db:ty) => {
        fn code_row(
            row: &<$db as sqlx::Database>::Row,
        ) -> Result<$crate::store::AuthCode, $crate::store::StoreError> {
            use $crate::store::codec::*;
            use $crate::store::error::SqlxResultExt as _;
            use sqlx::Row as _;
            let c = "decode code";
            Ok($crate::store::AuthCode {
                hash: SecretHash::from_db(row.try_get("hash").ctx(c)?)?,
                client_id: row.try_get("client_id").ctx(c)?,
                user: row.try_get("user_name").ctx(c)?,
                redirect_uri: row.try_get("redirect_uri").ctx(c)?,
                scope: row.try_get("scope").ctx(c)?,
                code_challenge: row.try_get("code_challenge").ctx(c)?,
                code_challenge_method: row.try_get("code_challenge_method").ctx(c)?,
                create_time: from_micros(row.try_get("create_time").ctx(c)?),
                expire_time: from_micros(row.try_get("expire_time").ctx(c)?),
                used_at: opt_from_micros(row.try_get("used_at").ctx(c)?),
                grant_id: row.try_get("grant_id").ctx(c)?,
            })
        }

        fn grant_row(
            row: &<$db as sqlx::Database>::Row,
        ) -> Result<$crate::store::Grant, $crate::store::StoreError> {
            use $crate::store::codec::*;
            use $crate::store::error::SqlxResultExt as _;
            use sqlx::Row as _;
            let c = "decode grant";
            Ok($crate::store::Grant {
                id: row.try_get("id").ctx(c)?,
                user: row.try_get("user_name").ctx(c)?,
                client_id: row.try_get("client_id").ctx(c)?,
                scope: row.try_get("scope").ctx(c)?,
                create_time: from_micros(row.try_get("create_time").ctx(c)?),
                expire_time: from_micros(row.try_get("expire_time").ctx(c)?),
                revoked_at: opt_from_micros(row.try_get("revoked_at").ctx(c)?),
            })
        }

        fn refresh_row(
            row: &<$db as sqlx::Database>::Row,
        ) -> Result<$crate::store::RefreshToken, $crate::store::StoreError> {
            use $crate::store::codec::*;
            use $crate::store::error::SqlxResultExt as _;
            use sqlx::Row as _;
            let c = "decode refresh token";
            let hash = |v: Option<Vec<u8>>| v.map(SecretHash::from_db).transpose();
            Ok($crate::store::RefreshToken {
                hash: SecretHash::from_db(row.try_get("hash").ctx(c)?)?,
                grant_id: row.try_get("grant_id").ctx(c)?,
                generation: row.try_get("generation").ctx(c)?,
                parent_hash: hash(row.try_get("parent_hash").ctx(c)?)?,
                create_time: from_micros(row.try_get("create_time").ctx(c)?),
                expire_time: from_micros(row.try_get("expire_time").ctx(c)?),
                rotated_at: opt_from_micros(row.try_get("rotated_at").ctx(c)?),
                successor_hash: hash(row.try_get("successor_hash").ctx(c)?)?,
                revoked_at: opt_from_micros(row.try_get("revoked_at").ctx(c)?),
                access_jti: row.try_get("access_jti").ctx(c)?,
                access_expire_time: opt_from_micros(row.try_get("access_expire_time").ctx(c)?),
            })
        }

        pub(crate) async fn create_code(
            &self,
            code: &$crate::store::NewAuthCode,
        ) -> Result<(), $crate::store::StoreError> {
            use $crate::store::codec::*;
            use $crate::store::error::SqlxResultExt as _;
            sqlx::query(
                "INSERT INTO auth_codes (hash, client_id, user_name, redirect_uri, scope, \
                 code_challenge, code_challenge_method, create_time, expire_time) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            )
            .bind(code.hash.0.to_vec())
            .bind(code.client_id.clone())
            .bind(code.user.clone())
            .bind(code.redirect_uri.clone())
            .bind(code.scope.clone())
            .bind(code.code_challenge.clone())
            .bind(code.code_challenge_method.clone())
            .bind(micros(code.create_time))
            .bind(micros(code.expire_time))
            .execute(&self.pool)
            .await
            .ctx("create code")?;
            Ok(())
        }

        pub(crate) async fn get_code(
            &self,
            hash: &$crate::store::SecretHash,
        ) -> Result<Option<$crate::store::AuthCode>, $crate::store::StoreError> {
            use $crate::store::error::SqlxResultExt as _;
            let row = sqlx::query($crate::store::ops_tokens::GET_CODE)
                .bind(hash.0.to_vec())
                .fetch_optional(&self.pool)
                .await
                .ctx("get code")?;
            row.as_ref().map(Self::code_row).transpose()
        }

        /// Inside `tx`: marks the code used and creates its grant and first refresh token, or
        /// (changing nothing) says why not.
        async fn redeem_in(
            &self,
            tx: &mut sqlx::Transaction<'static, $db>,
            hash: &$crate::store::SecretHash,
            first: &$crate::store::NewRefreshToken,
            now: std::time::SystemTime,
        ) -> Result<$crate::store::RedeemOutcome, $crate::store::StoreError> {
            use $crate::store::codec::*;
            use $crate::store::error::SqlxResultExt as _;
            use $crate::store::ops_tokens as q;
            use $crate::store::RedeemOutcome;
            let c = "redeem code";
            let now_us = micros(now);
            let grant_id = new_id();
            // One round trip: the conditional UPDATE, and the grant and refresh token inserted
            // only where it won (the code now names this redemption's fresh grant id).
            let won = sqlx::query(Self::REDEEM_ONE)
                .bind(hash.0.to_vec())
                .bind(now_us)
                .bind(grant_id.clone())
                .bind(q::issued_until(first))
                .bind(first.hash.0.to_vec())
                .bind(micros(first.expire_time))
                .bind(first.access_jti.clone())
                .bind(opt_micros(first.access_expire_time))
                .fetch_all(&mut **tx)
                .await
                .ctx(c)?;
            let Some(row) = won.first() else {
                let row = sqlx::query(q::GET_CODE)
                    .bind(hash.0.to_vec())
                    .fetch_optional(&mut **tx)
                    .await
                    .ctx(c)?;
                let Some(code) = row.as_ref().map(Self::code_row).transpose()? else {
                    return Ok(RedeemOutcome::Unknown);
                };
                return Ok(match code.used_at {
                    Some(used_at) => RedeemOutcome::AlreadyUsed { used_at, grant_id: code.grant_id },
                    None if code.expire_time <= now => RedeemOutcome::Expired,
                    // Unused and unexpired: its app has been deactivated.
                    None => RedeemOutcome::Unknown,
                });
            };
            let code = Self::code_row(row)?;
            let grant = $crate::store::Grant {
                id: grant_id,
                user: code.user.clone(),
                client_id: code.client_id.clone(),
                scope: code.scope.clone(),
                create_time: from_micros(now_us),
                expire_time: from_micros(q::issued_until(first)),
                revoked_at: None,
            };
            let refresh_token = Self::stored_refresh(&grant.id, 1, None, first, now);
            Ok(RedeemOutcome::Redeemed { code, grant, refresh_token })
        }

        /// A refresh token as the store now holds it (times at microsecond precision).
        fn stored_refresh(
            grant_id: &str,
            generation: i64,
            parent: Option<&$crate::store::SecretHash>,
            new: &$crate::store::NewRefreshToken,
            now: std::time::SystemTime,
        ) -> $crate::store::RefreshToken {
            use $crate::store::codec::*;
            $crate::store::RefreshToken {
                hash: new.hash,
                grant_id: grant_id.to_owned(),
                generation,
                parent_hash: parent.copied(),
                create_time: truncate_to_micros(now),
                expire_time: truncate_to_micros(new.expire_time),
                rotated_at: None,
                successor_hash: None,
                revoked_at: None,
                access_jti: new.access_jti.clone(),
                access_expire_time: new.access_expire_time.map(truncate_to_micros),
            }
        }

        pub(crate) async fn get_refresh_token(
            &self,
            hash: &$crate::store::SecretHash,
        ) -> Result<Option<$crate::store::RefreshToken>, $crate::store::StoreError> {
            use $crate::store::error::SqlxResultExt as _;
            let row = sqlx::query($crate::store::ops_tokens::GET_REFRESH)
                .bind(hash.0.to_vec())
                .fetch_optional(&self.pool)
                .await
                .ctx("get refresh token")?;
            row.as_ref().map(Self::refresh_row).transpose()
        }

        /// A refresh token and its grant, in one round trip.
        pub(crate) async fn get_refresh_token_and_grant(
            &self,
            hash: &$crate::store::SecretHash,
        ) -> Result<Option<($crate::store::RefreshToken, $crate::store::Grant)>, $crate::store::StoreError> {
            use $crate::store::error::SqlxResultExt as _;
            let c = "get refresh token";
            let row = sqlx::query($crate::store::ops_tokens::GET_REFRESH_AND_GRANT)
                .bind(hash.0.to_vec())
                .fetch_optional(&self.pool)
                .await
                .ctx(c)?;
            row.as_ref().map(Self::refresh_and_grant_row).transpose()
        }

        /// A row of `GET_REFRESH_AND_GRANT`: the token and its grant (`g_` columns).
        fn refresh_and_grant_row(
            row: &<$db as sqlx::Database>::Row,
        ) -> Result<($crate::store::RefreshToken, $crate::store::Grant), $crate::store::StoreError> {
            use $crate::store::codec::*;
            use $crate::store::error::SqlxResultExt as _;
            use sqlx::Row as _;
            let c = "get refresh token";
            let token = Self::refresh_row(row)?;
            let grant = $crate::store::Grant {
                id: token.grant_id.clone(),
                user: row.try_get("g_user_name").ctx(c)?,
                client_id: row.try_get("g_client_id").ctx(c)?,
                scope: row.try_get("g_scope").ctx(c)?,
                create_time: from_micros(row.try_get("g_create_time").ctx(c)?),
                expire_time: from_micros(row.try_get("g_expire_time").ctx(c)?),
                revoked_at: opt_from_micros(row.try_get("g_revoked_at").ctx(c)?),
            };
            Ok((token, grant))
        }

        /// Inside `tx`: rotates `old` (see `Store::rotate_refresh_token`), or (changing
        /// nothing) says why not; with the events to announce once committed.
        async fn rotate_in(
            &self,
            tx: &mut sqlx::Transaction<'static, $db>,
            old: &$crate::store::SecretHash,
            client_id: &str,
            new: &$crate::store::NewRefreshToken,
            now: std::time::SystemTime,
        ) -> Result<($crate::store::RotateOutcome, Vec<$crate::store::StoreEvent>), $crate::store::StoreError> {
            use $crate::store::codec::*;
            use $crate::store::error::SqlxResultExt as _;
            use $crate::store::ops_tokens as q;
            use sqlx::Row as _;
            let c = "rotate refresh token";
            let now_us = micros(now);
            // One round trip: the conditional UPDATE and, only where it won (the old token now
            // names this rotation's successor), the new token, the old access token's
            // revocation and the grant's extension; back comes the old token's row with the
            // extended grant.
            let won = sqlx::query(Self::ROTATE_ONE)
                .bind(old.0.to_vec())
                .bind(now_us)
                .bind(new.hash.0.to_vec())
                .bind(client_id.to_owned())
                .bind(micros(new.expire_time))
                .bind(new.access_jti.clone())
                .bind(opt_micros(new.access_expire_time))
                .bind(q::issued_until(new))
                .fetch_all(&mut **tx)
                .await
                .ctx(c)?;
            let Some(row) = won.first() else {
                let outcome = self.diagnose_rotation(tx, old, client_id, now_us).await?;
                return Ok((outcome, Vec::new()));
            };
            let generation: i64 = row.try_get("generation").ctx(c)?;
            let old_jti: Option<String> = row.try_get("access_jti").ctx(c)?;
            let old_access_exp: Option<i64> = row.try_get("access_expire_time").ctx(c)?;
            let grant = Self::grant_row(row)?;
            let refresh_token = Self::stored_refresh(&grant.id, generation + 1, Some(old), new, now);
            let mut events = Vec::new();
            let mut revoked_access_jti = None;
            // The statement recorded the revocation under the same condition.
            if let (Some(jti), Some(exp)) = (old_jti, old_access_exp) {
                if exp > now_us {
                    events.push($crate::store::StoreEvent::TokenRevoked { jti: jti.clone() });
                    revoked_access_jti = Some(jti);
                }
            }
            Ok(($crate::store::RotateOutcome::Rotated { grant, refresh_token, revoked_access_jti }, events))
        }

        /// Inside `tx`: one queued grant write.
        async fn apply_grant_write(
            &self,
            tx: &mut sqlx::Transaction<'static, $db>,
            write: &$crate::store::group_commit::GrantWrite,
        ) -> Result<($crate::store::group_commit::Decided, Vec<$crate::store::StoreEvent>), $crate::store::StoreError> {
            use $crate::store::group_commit::{Decided, GrantWrite};
            Ok(match write {
                GrantWrite::Redeem { hash, first, now, .. } => {
                    (Decided::Redeem(self.redeem_in(tx, hash, first, *now).await?), Vec::new())
                }
                GrantWrite::Rotate { old, client_id, new, now, .. } => {
                    let (outcome, events) = self.rotate_in(tx, old, client_id, new, *now).await?;
                    (Decided::Rotate(outcome), events)
                }
            })
        }

        /// `writes` as one transaction (see `store/group_commit.rs`): every caller hears its
        /// outcome after the commit. If anything fails, each write is tried again alone.
        pub(crate) async fn write_grants(&self, writes: Vec<$crate::store::group_commit::GrantWrite>) {
            let c = "commit grants";
            let together = async {
                let mut tx = self.begin_write(c).await?;
                let mut decided = Vec::with_capacity(writes.len());
                let mut events = Vec::new();
                for write in &writes {
                    let (d, e) = self.apply_grant_write(&mut tx, write).await?;
                    decided.push(d);
                    events.extend(e);
                }
                self.notify(&mut tx, &events).await?;
                tx.commit().await.ctx(c)?;
                Ok::<_, $crate::store::StoreError>((decided, events))
            }
            .await;
            match together {
                Ok((decided, events)) => {
                    self.events.publish(&events);
                    for (write, d) in writes.into_iter().zip(decided) {
                        write.answer(Ok(d));
                    }
                }
                Err(e) if writes.len() == 1 => {
                    if let Some(write) = writes.into_iter().next() {
                        write.answer(Err(e));
                    }
                }
                Err(e) => {
                    tracing::debug!(error = %e, writes = writes.len(), "grant batch failed; retrying each alone");
                    let mut unavailable = false;
                    for write in writes {
                        if unavailable {
                            write.answer(Err($crate::store::StoreError::new(
                                $crate::store::StoreErrorKind::Unavailable,
                                "store unavailable during commit grants",
                            )));
                            continue;
                        }
                        let alone = self.write_alone(&write).await;
                        unavailable = alone.as_ref().is_err_and(|e| e.is_unavailable());
                        write.answer(alone);
                    }
                }
            }
        }

        /// One grant write in a transaction of its own.
        async fn write_alone(
            &self,
            write: &$crate::store::group_commit::GrantWrite,
        ) -> Result<$crate::store::group_commit::Decided, $crate::store::StoreError> {
            use $crate::store::error::SqlxResultExt as _;
            let c = "commit grant";
            let mut tx = self.begin_write(c).await?;
            let (decided, events) = self.apply_grant_write(&mut tx, write).await?;
            self.notify(&mut tx, &events).await?;
            tx.commit().await.ctx(c)?;
            self.events.publish(&events);
            Ok(decided)
        }

        async fn diagnose_rotation(
            &self,
            tx: &mut sqlx::Transaction<'static, $db>,
            old: &$crate::store::SecretHash,
            client_id: &str,
            now_us: i64,
        ) -> Result<$crate::store::RotateOutcome, $crate::store::StoreError> {
            use $crate::store::codec::*;
            use $crate::store::error::SqlxResultExt as _;
            use $crate::store::RotateOutcome as O;
            use sqlx::Row as _;
            let c = "diagnose rotation";
            let row = sqlx::query($crate::store::ops_tokens::ROTATE_DIAGNOSE)
                .bind(old.0.to_vec())
                .fetch_optional(&mut **tx)
                .await
                .ctx(c)?;
            let Some(row) = row else { return Ok(O::Unknown) };
            let grant_id: String = row.try_get("grant_id").ctx(c)?;
            let owner: String = row.try_get("client_id").ctx(c)?;
            if owner != client_id {
                return Ok(O::ClientMismatch);
            }
            let rotated_at: Option<i64> = row.try_get("rotated_at").ctx(c)?;
            let revoked_at: Option<i64> = row.try_get("revoked_at").ctx(c)?;
            let grant_revoked: Option<i64> = row.try_get("grant_revoked_at").ctx(c)?;
            let app_active: i64 = row.try_get("app_active").ctx(c)?;
            let expire: i64 = row.try_get("expire_time").ctx(c)?;
            let successor_current: i64 = row.try_get("successor_current").ctx(c)?;
            if revoked_at.is_some() || grant_revoked.is_some() || app_active == 0 {
                return Ok(O::Revoked { grant_id });
            }
            if let Some(at) = rotated_at {
                return Ok(O::AlreadyRotated {
                    grant_id,
                    rotated_at: from_micros(at),
                    is_immediate_predecessor_of_current: successor_current == 1,
                });
            }
            if expire <= now_us {
                return Ok(O::Expired { grant_id });
            }
            Err($crate::store::StoreError::internal("rotation refused for no known reason"))
        }

        pub(crate) async fn get_grant(
            &self,
            id: &str,
        ) -> Result<Option<$crate::store::Grant>, $crate::store::StoreError> {
            use $crate::store::error::SqlxResultExt as _;
            let sql =
                format!("SELECT {} FROM grants WHERE id = $1", $crate::store::ops_tokens::GRANT_COLS);
            let row = sqlx::query(&sql).bind(id).fetch_optional(&self.pool).await.ctx("get grant")?;
            row.as_ref().map(Self::grant_row).transpose()
        }

        pub(crate) async fn is_grant_live(&self, id: &str) -> Result<bool, $crate::store::StoreError> {
            use $crate::store::error::SqlxResultExt as _;
            let row = sqlx::query($crate::store::ops_tokens::GRANT_LIVE)
                .bind(id)
                .fetch_optional(&self.pool)
                .await
                .ctx("check grant")?;
            Ok(row.is_some())
        }

        pub(crate) async fn revoke_grant(
            &self,
            id: &str,
            now: std::time::SystemTime,
        ) -> Result<bool, $crate::store::StoreError> {
            use $crate::store::error::SqlxResultExt as _;
            let c = "revoke grant";
            let now_us = $crate::store::codec::micros(now);
            let mut tx = self.begin_write(c).await?;
            let done = sqlx::query("UPDATE grants SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL")
                .bind(id)
                .bind(now_us)
                .execute(&mut *tx)
                .await
                .ctx(c)?;
            sqlx::query("UPDATE refresh_tokens SET revoked_at = $2 WHERE grant_id = $1 AND revoked_at IS NULL")
                .bind(id)
                .bind(now_us)
                .execute(&mut *tx)
                .await
                .ctx(c)?;
            let changed = done.rows_affected() > 0;
            let events = if changed {
                vec![$crate::store::StoreEvent::GrantRevoked { grant_id: id.to_owned() }]
            } else {
                Vec::new()
            };
            self.notify(&mut tx, &events).await?;
            tx.commit().await.ctx(c)?;
            self.events.publish(&events);
            Ok(changed)
        }

        pub(crate) async fn revoke_access_token(
            &self,
            jti: &str,
            grant_id: Option<&str>,
            expire_time: std::time::SystemTime,
            now: std::time::SystemTime,
        ) -> Result<(), $crate::store::StoreError> {
            use $crate::store::codec::*;
            use $crate::store::error::SqlxResultExt as _;
            let c = "revoke access token";
            let mut tx = self.begin_write(c).await?;
            sqlx::query($crate::store::ops_tokens::INSERT_REVOCATION)
                .bind(jti)
                .bind(grant_id)
                .bind(micros(expire_time))
                .bind(micros(now))
                .execute(&mut *tx)
                .await
                .ctx(c)?;
            let events = vec![$crate::store::StoreEvent::TokenRevoked { jti: jti.to_owned() }];
            self.notify(&mut tx, &events).await?;
            tx.commit().await.ctx(c)?;
            self.events.publish(&events);
            Ok(())
        }

        pub(crate) async fn is_access_token_revoked(
            &self,
            jti: &str,
        ) -> Result<bool, $crate::store::StoreError> {
            use $crate::store::error::SqlxResultExt as _;
            let row = sqlx::query("SELECT 1 FROM token_revocations WHERE jti = $1")
                .bind(jti)
                .fetch_optional(&self.pool)
                .await
                .ctx("check access token")?;
            Ok(row.is_some())
        }

        pub(crate) async fn is_access_token_live(
            &self,
            jti: &str,
            grant_id: &str,
        ) -> Result<bool, $crate::store::StoreError> {
            use $crate::store::error::SqlxResultExt as _;
            let sql = format!(
                "SELECT CAST(CASE WHEN EXISTS ({}) AND NOT EXISTS (SELECT 1 FROM \
                 token_revocations WHERE jti = $2) THEN 1 ELSE 0 END AS BIGINT)",
                $crate::store::ops_tokens::GRANT_LIVE
            );
            let live: i64 = sqlx::query_scalar(&sql)
                .bind(grant_id)
                .bind(jti)
                .fetch_one(&self.pool)
                .await
                .ctx("check access token")?;
            Ok(live == 1)
        }

        pub(crate) async fn live_access_token_app_scopes(
            &self,
            jti: &str,
            grant_id: &str,
        ) -> Result<Option<Vec<String>>, $crate::store::StoreError> {
            use $crate::store::error::SqlxResultExt as _;
            let scopes: Option<String> =
                sqlx::query_scalar($crate::store::ops_tokens::LIVE_TOKEN_APP_SCOPES)
                    .bind(grant_id)
                    .bind(jti)
                    .fetch_optional(&self.pool)
                    .await
                    .ctx("check access token")?;
            scopes
                .as_deref()
                .map($crate::store::codec::list_from_json)
                .transpose()
        }
    };
}

pub(crate) use tokens_ops;
