//! Federated users and the used `state`s of provider callbacks (SPEC §7.1), written once for
//! both engines (see `ops_apps.rs` for how it is instantiated).

pub(crate) const FEDERATED_COLS: &str =
    "name, provider, subject, max_scope, group_names, create_time, last_login_time";

macro_rules! federation_ops {
    ($db:ty) => {
        fn federated_row(
            row: &<$db as sqlx::Database>::Row,
        ) -> Result<$crate::store::FederatedUser, $crate::store::StoreError> {
            use sqlx::Row as _;
            use $crate::store::codec::*;
            use $crate::store::error::SqlxResultExt as _;
            let c = "decode federated user";
            let groups: String = row.try_get("group_names").ctx(c)?;
            Ok($crate::store::FederatedUser {
                name: row.try_get("name").ctx(c)?,
                provider: row.try_get("provider").ctx(c)?,
                subject: row.try_get("subject").ctx(c)?,
                max_scope: row.try_get("max_scope").ctx(c)?,
                groups: list_from_json(&groups)?,
                create_time: from_micros(row.try_get("create_time").ctx(c)?),
                last_login_time: from_micros(row.try_get("last_login_time").ctx(c)?),
            })
        }

        pub(crate) async fn get_federated_user(
            &self,
            name: &str,
        ) -> Result<Option<$crate::store::FederatedUser>, $crate::store::StoreError> {
            use $crate::store::error::SqlxResultExt as _;
            let sql = format!(
                "SELECT {} FROM federated_users WHERE name = $1",
                $crate::store::ops_federation::FEDERATED_COLS
            );
            let row = sqlx::query(&sql)
                .bind(name)
                .fetch_optional(&self.pool)
                .await
                .ctx("get federated user")?;
            row.as_ref().map(Self::federated_row).transpose()
        }

        pub(crate) async fn record_federated_login(
            &self,
            user: &$crate::store::FederatedUser,
        ) -> Result<$crate::store::FederatedLogin, $crate::store::StoreError> {
            use sqlx::Row as _;
            use $crate::store::codec::*;
            use $crate::store::error::SqlxResultExt as _;
            let c = "record federated login";
            let mut tx = self.begin_write(c).await?;
            let found =
                sqlx::query("SELECT provider, subject FROM federated_users WHERE name = $1")
                    .bind(&user.name)
                    .fetch_optional(&mut *tx)
                    .await
                    .ctx(c)?;
            let groups = list_to_json(&user.groups);
            match found {
                Some(row) => {
                    let provider: String = row.try_get("provider").ctx(c)?;
                    let subject: String = row.try_get("subject").ctx(c)?;
                    if provider != user.provider || subject != user.subject {
                        tx.rollback().await.ctx(c)?;
                        return Ok($crate::store::FederatedLogin::NameTaken { provider });
                    }
                    sqlx::query(
                        "UPDATE federated_users SET max_scope = $2, group_names = $3, \
                         last_login_time = $4 WHERE name = $1",
                    )
                    .bind(&user.name)
                    .bind(&user.max_scope)
                    .bind(groups)
                    .bind(micros(user.last_login_time))
                    .execute(&mut *tx)
                    .await
                    .ctx(c)?;
                }
                None => {
                    sqlx::query(
                        "INSERT INTO federated_users (name, provider, subject, max_scope, \
                         group_names, create_time, last_login_time) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7)",
                    )
                    .bind(&user.name)
                    .bind(&user.provider)
                    .bind(&user.subject)
                    .bind(&user.max_scope)
                    .bind(groups)
                    .bind(micros(user.create_time))
                    .bind(micros(user.last_login_time))
                    .execute(&mut *tx)
                    .await
                    .ctx(c)?;
                }
            }
            tx.commit().await.ctx(c)?;
            Ok($crate::store::FederatedLogin::Recorded)
        }

        pub(crate) async fn retire_federated_user(
            &self,
            name: &str,
            now: std::time::SystemTime,
        ) -> Result<bool, $crate::store::StoreError> {
            use $crate::store::codec::*;
            use $crate::store::error::SqlxResultExt as _;
            use sqlx::Row as _;
            let c = "retire federated user";
            let mut tx = self.begin_write(c).await?;
            let gone = sqlx::query("DELETE FROM federated_users WHERE name = $1")
                .bind(name)
                .execute(&mut *tx)
                .await
                .ctx(c)?;
            if gone.rows_affected() == 0 {
                tx.rollback().await.ctx(c)?;
                return Ok(false);
            }
            let mut events = Vec::new();
            for statement in [
                "DELETE FROM sessions WHERE user_name = $1",
                "DELETE FROM consents WHERE user_name = $1",
                "DELETE FROM auth_codes WHERE user_name = $1 AND used_at IS NULL",
            ] {
                sqlx::query(statement).bind(name).execute(&mut *tx).await.ctx(c)?;
            }
            let pats = sqlx::query(
                "DELETE FROM personal_tokens WHERE user_name = $1 RETURNING id, token_hash",
            )
            .bind(name)
            .fetch_all(&mut *tx)
            .await
            .ctx(c)?;
            for row in pats {
                events.push($crate::store::StoreEvent::PatRevoked {
                    id: row.try_get("id").ctx(c)?,
                    token_hash: SecretHash::from_db(row.try_get("token_hash").ctx(c)?)?,
                });
            }
            sqlx::query(
                "UPDATE refresh_tokens SET revoked_at = $2 WHERE revoked_at IS NULL AND grant_id IN \
                 (SELECT id FROM grants WHERE user_name = $1 AND revoked_at IS NULL)",
            )
            .bind(name)
            .bind(micros(now))
            .execute(&mut *tx)
            .await
            .ctx(c)?;
            let grants = sqlx::query(
                "UPDATE grants SET revoked_at = $2 WHERE user_name = $1 AND revoked_at IS NULL \
                 RETURNING id",
            )
            .bind(name)
            .bind(micros(now))
            .fetch_all(&mut *tx)
            .await
            .ctx(c)?;
            for row in grants {
                events.push($crate::store::StoreEvent::GrantRevoked {
                    grant_id: row.try_get("id").ctx(c)?,
                });
            }
            self.notify(&mut tx, &events).await?;
            tx.commit().await.ctx(c)?;
            self.events.publish(&events);
            Ok(true)
        }

        pub(crate) async fn use_login_state(
            &self,
            state_hash: &$crate::store::SecretHash,
            expire_time: std::time::SystemTime,
            now: std::time::SystemTime,
        ) -> Result<bool, $crate::store::StoreError> {
            use $crate::store::codec::*;
            use $crate::store::error::SqlxResultExt as _;
            let c = "use login state";
            // States past their expiry can no longer be presented (their cookie is refused
            // first): forget them here, so the table stays as small as the logins of 10 min.
            sqlx::query("DELETE FROM idp_login_states WHERE expire_time <= $1")
                .bind(micros(now))
                .execute(&self.pool)
                .await
                .ctx(c)?;
            let done = sqlx::query(
                "INSERT INTO idp_login_states (state_hash, expire_time) VALUES ($1, $2) \
                 ON CONFLICT (state_hash) DO NOTHING",
            )
            .bind(state_hash.0.to_vec())
            .bind(micros(expire_time))
            .execute(&self.pool)
            .await
            .ctx(c)?;
            Ok(done.rows_affected() == 1)
        }
    };
}

pub(crate) use federation_ops;
