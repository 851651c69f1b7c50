//! Personal access tokens, login sessions, pending consents, cleanup of expired rows and the
//! health probe, written once for both engines (see `ops_apps.rs` for how it is instantiated).

pub(crate) const PAT_COLS: &str = "id, user_name, display_name, scope, token_hash, create_time, \
    expire_time, last_used_time";

pub(crate) const CONSENT_COLS: &str = "id, csrf_hash, user_name, client_id, redirect_uri, scope, \
    state, code_challenge, code_challenge_method, create_time, expire_time";

/// `last_used_time` is written at most once per this many microseconds, so a PAT used on
/// every request does not turn every request into a write.
pub(crate) const TOUCH_EVERY_US: i64 = 60_000_000;

/// (table, key column, expiry column), in the order cleanup visits them; grants go last, and
/// take with them (ON DELETE CASCADE) any refresh token row that outlived its own expiry.
pub(crate) const EXPIRING: [(&str, &str, &str); 7] = [
    ("auth_codes", "hash", "expire_time"),
    ("sessions", "id_hash", "expire_time"),
    ("consents", "id", "expire_time"),
    ("personal_tokens", "id", "expire_time"),
    ("refresh_tokens", "hash", "expire_time"),
    ("token_revocations", "jti", "expire_time"),
    ("grants", "id", "expire_time"),
];

macro_rules! user_ops {
    ($db:ty) => {
        fn pat_row(
            row: &<$db as sqlx::Database>::Row,
        ) -> Result<$crate::store::PersonalToken, $crate::store::StoreError> {
            use $crate::store::codec::*;
            use $crate::store::error::SqlxResultExt as _;
            use sqlx::Row as _;
            let c = "decode personal token";
            Ok($crate::store::PersonalToken {
                id: row.try_get("id").ctx(c)?,
                user: row.try_get("user_name").ctx(c)?,
                display_name: row.try_get("display_name").ctx(c)?,
                scope: row.try_get("scope").ctx(c)?,
                token_hash: SecretHash::from_db(row.try_get("token_hash").ctx(c)?)?,
                create_time: from_micros(row.try_get("create_time").ctx(c)?),
                expire_time: from_micros(row.try_get("expire_time").ctx(c)?),
                last_used_time: opt_from_micros(row.try_get("last_used_time").ctx(c)?),
            })
        }

        fn consent_row(
            row: &<$db as sqlx::Database>::Row,
        ) -> Result<$crate::store::PendingConsent, $crate::store::StoreError> {
            use $crate::store::codec::*;
            use $crate::store::error::SqlxResultExt as _;
            use sqlx::Row as _;
            let c = "decode consent";
            Ok($crate::store::PendingConsent {
                id: row.try_get("id").ctx(c)?,
                csrf_hash: SecretHash::from_db(row.try_get("csrf_hash").ctx(c)?)?,
                user: row.try_get("user_name").ctx(c)?,
                client_id: row.try_get("client_id").ctx(c)?,
                redirect_uri: row.try_get("redirect_uri").ctx(c)?,
                scope: row.try_get("scope").ctx(c)?,
                state: row.try_get("state").ctx(c)?,
                code_challenge: row.try_get("code_challenge").ctx(c)?,
                code_challenge_method: row.try_get("code_challenge_method").ctx(c)?,
                create_time: from_micros(row.try_get("create_time").ctx(c)?),
                expire_time: from_micros(row.try_get("expire_time").ctx(c)?),
            })
        }

        pub(crate) async fn create_pat(
            &self,
            pat: &$crate::store::PersonalToken,
        ) -> Result<(), $crate::store::StoreError> {
            use $crate::store::codec::*;
            use $crate::store::error::SqlxResultExt as _;
            sqlx::query(
                "INSERT INTO personal_tokens (id, user_name, display_name, scope, token_hash, \
                 create_time, expire_time, last_used_time) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            )
            .bind(pat.id.clone())
            .bind(pat.user.clone())
            .bind(pat.display_name.clone())
            .bind(pat.scope.clone())
            .bind(pat.token_hash.0.to_vec())
            .bind(micros(pat.create_time))
            .bind(micros(pat.expire_time))
            .bind(opt_micros(pat.last_used_time))
            .execute(&self.pool)
            .await
            .ctx("create personal token")?;
            Ok(())
        }

        pub(crate) async fn get_pat_by_hash(
            &self,
            hash: &$crate::store::SecretHash,
        ) -> Result<Option<$crate::store::PersonalToken>, $crate::store::StoreError> {
            use $crate::store::error::SqlxResultExt as _;
            let sql = format!(
                "SELECT {} FROM personal_tokens WHERE token_hash = $1",
                $crate::store::ops_users::PAT_COLS
            );
            let row = sqlx::query(&sql)
                .bind(hash.0.to_vec())
                .fetch_optional(&self.pool)
                .await
                .ctx("get personal token")?;
            row.as_ref().map(Self::pat_row).transpose()
        }

        pub(crate) async fn list_pats(
            &self,
            user: &str,
        ) -> Result<Vec<$crate::store::PersonalToken>, $crate::store::StoreError> {
            use $crate::store::error::SqlxResultExt as _;
            let sql = format!(
                "SELECT {} FROM personal_tokens WHERE user_name = $1 ORDER BY create_time, id",
                $crate::store::ops_users::PAT_COLS
            );
            let rows = sqlx::query(&sql)
                .bind(user)
                .fetch_all(&self.pool)
                .await
                .ctx("list personal tokens")?;
            rows.iter().map(Self::pat_row).collect()
        }

        pub(crate) async fn touch_pat(
            &self,
            id: &str,
            now: std::time::SystemTime,
        ) -> Result<(), $crate::store::StoreError> {
            use $crate::store::error::SqlxResultExt as _;
            let now_us = $crate::store::codec::micros(now);
            sqlx::query(
                "UPDATE personal_tokens SET last_used_time = $2 WHERE id = $1 \
                 AND (last_used_time IS NULL OR last_used_time <= $3)",
            )
            .bind(id)
            .bind(now_us)
            .bind(now_us.saturating_sub($crate::store::ops_users::TOUCH_EVERY_US))
            .execute(&self.pool)
            .await
            .ctx("touch personal token")?;
            Ok(())
        }

        pub(crate) async fn delete_pat(
            &self,
            user: &str,
            id: &str,
        ) -> Result<(), $crate::store::StoreError> {
            use $crate::store::error::SqlxResultExt as _;
            let c = "delete personal token";
            let mut tx = self.begin_write(c).await?;
            let hash: Option<Vec<u8>> = sqlx::query_scalar(
                "DELETE FROM personal_tokens WHERE id = $1 AND user_name = $2 RETURNING token_hash",
            )
            .bind(id)
            .bind(user)
            .fetch_optional(&mut *tx)
            .await
            .ctx(c)?;
            let Some(hash) = hash else {
                return Err($crate::store::StoreError::not_found(format!(
                    "personal token 'personalTokens/{id}' not found"
                )));
            };
            let token_hash = $crate::store::SecretHash::from_db(hash)?;
            let events =
                vec![$crate::store::StoreEvent::PatRevoked { id: id.to_owned(), token_hash }];
            self.notify(&mut tx, &events).await?;
            tx.commit().await.ctx(c)?;
            self.events.publish(&events);
            Ok(())
        }

        pub(crate) async fn create_session(
            &self,
            s: &$crate::store::Session,
        ) -> Result<(), $crate::store::StoreError> {
            use $crate::store::codec::*;
            use $crate::store::error::SqlxResultExt as _;
            sqlx::query(
                "INSERT INTO sessions (id_hash, user_name, create_time, expire_time) \
                 VALUES ($1, $2, $3, $4)",
            )
            .bind(s.id_hash.0.to_vec())
            .bind(s.user.clone())
            .bind(micros(s.create_time))
            .bind(micros(s.expire_time))
            .execute(&self.pool)
            .await
            .ctx("create session")?;
            Ok(())
        }

        pub(crate) async fn get_session(
            &self,
            id_hash: &$crate::store::SecretHash,
            now: std::time::SystemTime,
        ) -> Result<Option<$crate::store::Session>, $crate::store::StoreError> {
            use $crate::store::codec::*;
            use $crate::store::error::SqlxResultExt as _;
            use sqlx::Row as _;
            let c = "get session";
            let row = sqlx::query(
                "SELECT user_name, create_time, expire_time FROM sessions \
                 WHERE id_hash = $1 AND expire_time > $2",
            )
            .bind(id_hash.0.to_vec())
            .bind(micros(now))
            .fetch_optional(&self.pool)
            .await
            .ctx(c)?;
            let Some(row) = row else { return Ok(None) };
            Ok(Some($crate::store::Session {
                id_hash: *id_hash,
                user: row.try_get("user_name").ctx(c)?,
                create_time: from_micros(row.try_get("create_time").ctx(c)?),
                expire_time: from_micros(row.try_get("expire_time").ctx(c)?),
            }))
        }

        pub(crate) async fn delete_session(
            &self,
            id_hash: &$crate::store::SecretHash,
        ) -> Result<bool, $crate::store::StoreError> {
            use $crate::store::error::SqlxResultExt as _;
            let done = sqlx::query("DELETE FROM sessions WHERE id_hash = $1")
                .bind(id_hash.0.to_vec())
                .execute(&self.pool)
                .await
                .ctx("delete session")?;
            Ok(done.rows_affected() > 0)
        }

        pub(crate) async fn create_consent(
            &self,
            p: &$crate::store::PendingConsent,
        ) -> Result<(), $crate::store::StoreError> {
            use $crate::store::codec::*;
            use $crate::store::error::SqlxResultExt as _;
            sqlx::query(
                "INSERT INTO consents (id, csrf_hash, user_name, client_id, redirect_uri, scope, \
                 state, code_challenge, code_challenge_method, create_time, expire_time) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
            )
            .bind(p.id.clone())
            .bind(p.csrf_hash.0.to_vec())
            .bind(p.user.clone())
            .bind(p.client_id.clone())
            .bind(p.redirect_uri.clone())
            .bind(p.scope.clone())
            .bind(p.state.clone())
            .bind(p.code_challenge.clone())
            .bind(p.code_challenge_method.clone())
            .bind(micros(p.create_time))
            .bind(micros(p.expire_time))
            .execute(&self.pool)
            .await
            .ctx("create consent")?;
            Ok(())
        }

        pub(crate) async fn get_consent(
            &self,
            id: &str,
            now: std::time::SystemTime,
        ) -> Result<Option<$crate::store::PendingConsent>, $crate::store::StoreError> {
            use $crate::store::error::SqlxResultExt as _;
            let sql = format!(
                "SELECT {} FROM consents WHERE id = $1 AND expire_time > $2",
                $crate::store::ops_users::CONSENT_COLS
            );
            let row = sqlx::query(&sql)
                .bind(id)
                .bind($crate::store::codec::micros(now))
                .fetch_optional(&self.pool)
                .await
                .ctx("get consent")?;
            row.as_ref().map(Self::consent_row).transpose()
        }

        pub(crate) async fn take_consent(
            &self,
            id: &str,
            csrf_hash: &$crate::store::SecretHash,
            user: &str,
            now: std::time::SystemTime,
        ) -> Result<Option<$crate::store::PendingConsent>, $crate::store::StoreError> {
            use $crate::store::error::SqlxResultExt as _;
            let sql = format!(
                "DELETE FROM consents WHERE id = $1 AND csrf_hash = $2 AND user_name = $3 \
                 AND expire_time > $4 RETURNING {}",
                $crate::store::ops_users::CONSENT_COLS
            );
            let row = sqlx::query(&sql)
                .bind(id)
                .bind(csrf_hash.0.to_vec())
                .bind(user)
                .bind($crate::store::codec::micros(now))
                .fetch_optional(&self.pool)
                .await
                .ctx("take consent")?;
            row.as_ref().map(Self::consent_row).transpose()
        }

        pub(crate) async fn cleanup_expired(
            &self,
            now: std::time::SystemTime,
            batch: u32,
        ) -> Result<$crate::store::CleanupReport, $crate::store::StoreError> {
            use $crate::store::error::SqlxResultExt as _;
            let now_us = $crate::store::codec::micros(now);
            let batch = i64::from(batch.max(1));
            let mut counts = [0u64; 7];
            for (i, (table, key, at)) in $crate::store::ops_users::EXPIRING.iter().enumerate() {
                let sql = format!(
                    "DELETE FROM {table} WHERE {key} IN \
                     (SELECT {key} FROM {table} WHERE {at} <= $1 LIMIT $2)"
                );
                loop {
                    // Each batch is its own short statement: no lock is held between batches.
                    let done = sqlx::query(&sql)
                        .bind(now_us)
                        .bind(batch)
                        .execute(&self.pool)
                        .await
                        .ctx("clean up expired rows")?;
                    counts[i] += done.rows_affected();
                    if done.rows_affected() < batch.unsigned_abs() {
                        break;
                    }
                    tokio::task::yield_now().await;
                }
            }
            let [auth_codes, sessions, consents, personal_tokens, refresh_tokens, token_revocations, grants] =
                counts;
            Ok($crate::store::CleanupReport {
                auth_codes,
                sessions,
                consents,
                personal_tokens,
                refresh_tokens,
                token_revocations,
                grants,
            })
        }

        pub(crate) async fn health(&self) -> Result<(), $crate::store::StoreError> {
            use $crate::store::error::SqlxResultExt as _;
            let one: i64 =
                sqlx::query_scalar("SELECT CAST(1 AS BIGINT)").fetch_one(&self.pool).await.ctx("health check")?;
            if one == 1 { Ok(()) } else { Err($crate::store::StoreError::internal("health check")) }
        }
    };
}

pub(crate) use user_ops;
