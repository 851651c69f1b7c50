//! App operations (SPEC §3.3), written once for both engines: the SQL is portable (`$N`
//! placeholders, `RETURNING`, `ON CONFLICT`), and each engine instantiates [`apps_ops!`]
//! inside its `impl`, supplying `pool`, `events`, `begin_write` and `notify`.

pub(crate) const APP_COLS: &str = "id, client_id, display_name, description, logo_uri, \
    allowed_callback_urls, allowed_logout_urls, allowed_web_origins, client_type, secret_hash, \
    previous_secret_hash, previous_secret_expires_at, scopes, skip_consent, active, labels, \
    created_by, updated_by, create_time, update_time, managed_by";

pub(crate) const INSERT_APP: &str = "INSERT INTO apps (id, client_id, display_name, description, \
    logo_uri, allowed_callback_urls, allowed_logout_urls, allowed_web_origins, client_type, \
    secret_hash, previous_secret_hash, previous_secret_expires_at, scopes, skip_consent, active, \
    labels, created_by, updated_by, create_time, update_time, managed_by) VALUES ($1, $2, $3, \
    $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21)";

/// Config upsert: an existing API-managed app with the same client id is left alone (the
/// `WHERE` fails, no row comes back, and the caller reports a conflict).
pub(crate) const UPSERT_CONFIG_APP_TAIL: &str = " ON CONFLICT (client_id) DO UPDATE SET \
    display_name = excluded.display_name, description = excluded.description, \
    logo_uri = excluded.logo_uri, allowed_callback_urls = excluded.allowed_callback_urls, \
    allowed_logout_urls = excluded.allowed_logout_urls, \
    allowed_web_origins = excluded.allowed_web_origins, client_type = excluded.client_type, \
    secret_hash = excluded.secret_hash, previous_secret_hash = NULL, \
    previous_secret_expires_at = NULL, scopes = excluded.scopes, \
    skip_consent = excluded.skip_consent, active = excluded.active, labels = excluded.labels, \
    updated_by = excluded.updated_by, update_time = excluded.update_time \
    WHERE apps.managed_by = 'config'";

/// Leaves the client type and the secret hashes alone: secrets change only through
/// `rotate_app_secret`, so an update computed from a copy read before a rotation cannot bring
/// the rotated-away secret back.
pub(crate) const UPDATE_APP: &str = "UPDATE apps SET display_name = $2, description = $3, \
    logo_uri = $4, allowed_callback_urls = $5, allowed_logout_urls = $6, \
    allowed_web_origins = $7, scopes = $8, skip_consent = $9, active = $10, \
    labels = $11, updated_by = $12, update_time = $13 WHERE id = $1";

pub(crate) const REVOKE_APP_GRANTS: &str =
    "UPDATE grants SET revoked_at = $2 WHERE client_id = $1 AND revoked_at IS NULL";

pub(crate) const REVOKE_APP_REFRESH: &str = "UPDATE refresh_tokens SET revoked_at = $2 \
    WHERE revoked_at IS NULL AND grant_id IN (SELECT id FROM grants WHERE client_id = $1)";

/// Instantiated inside `impl <Engine>`; `$db` is `sqlx::Sqlite` or `sqlx::Postgres`.
macro_rules! apps_ops {
    ($db:ty) => {
        fn app_row(
            row: &<$db as sqlx::Database>::Row,
        ) -> Result<$crate::store::App, $crate::store::StoreError> {
            use sqlx::Row as _;
            use $crate::store::codec::*;
            use $crate::store::error::SqlxResultExt as _;
            let c = "decode app";
            let hash = |v: Option<Vec<u8>>| v.map(SecretHash::from_db).transpose();
            let client_type: String = row.try_get("client_type").ctx(c)?;
            let managed_by: String = row.try_get("managed_by").ctx(c)?;
            Ok($crate::store::App {
                id: row.try_get("id").ctx(c)?,
                client_id: row.try_get("client_id").ctx(c)?,
                display_name: row.try_get("display_name").ctx(c)?,
                description: row.try_get("description").ctx(c)?,
                logo_uri: row.try_get("logo_uri").ctx(c)?,
                allowed_callback_urls: list_from_json(
                    row.try_get("allowed_callback_urls").ctx(c)?,
                )?,
                allowed_logout_urls: list_from_json(row.try_get("allowed_logout_urls").ctx(c)?)?,
                allowed_web_origins: list_from_json(row.try_get("allowed_web_origins").ctx(c)?)?,
                client_type: $crate::store::ClientType::parse(&client_type)
                    .ok_or_else(|| $crate::store::StoreError::internal("bad client_type"))?,
                secret_hash: hash(row.try_get("secret_hash").ctx(c)?)?,
                previous_secret_hash: hash(row.try_get("previous_secret_hash").ctx(c)?)?,
                previous_secret_expires_at: opt_from_micros(
                    row.try_get("previous_secret_expires_at").ctx(c)?,
                ),
                scopes: list_from_json(row.try_get("scopes").ctx(c)?)?,
                skip_consent: row.try_get("skip_consent").ctx(c)?,
                active: row.try_get("active").ctx(c)?,
                labels: map_from_json(row.try_get("labels").ctx(c)?)?,
                created_by: row.try_get("created_by").ctx(c)?,
                updated_by: row.try_get("updated_by").ctx(c)?,
                create_time: from_micros(row.try_get("create_time").ctx(c)?),
                update_time: from_micros(row.try_get("update_time").ctx(c)?),
                managed_by: $crate::store::ManagedBy::parse(&managed_by)
                    .ok_or_else(|| $crate::store::StoreError::internal("bad managed_by"))?,
            })
        }

        fn bind_new_app<'q>(
            q: sqlx::query::Query<'q, $db, <$db as sqlx::Database>::Arguments<'q>>,
            app: &$crate::store::App,
        ) -> sqlx::query::Query<'q, $db, <$db as sqlx::Database>::Arguments<'q>> {
            use $crate::store::codec::*;
            q.bind(app.id.clone())
                .bind(app.client_id.clone())
                .bind(app.display_name.clone())
                .bind(app.description.clone())
                .bind(app.logo_uri.clone())
                .bind(list_to_json(&app.allowed_callback_urls))
                .bind(list_to_json(&app.allowed_logout_urls))
                .bind(list_to_json(&app.allowed_web_origins))
                .bind(app.client_type.as_str())
                .bind(app.secret_hash.map(|h| h.0.to_vec()))
                .bind(app.previous_secret_hash.map(|h| h.0.to_vec()))
                .bind(opt_micros(app.previous_secret_expires_at))
                .bind(list_to_json(&app.scopes))
                .bind(app.skip_consent)
                .bind(app.active)
                .bind(map_to_json(&app.labels))
                .bind(app.created_by.clone())
                .bind(app.updated_by.clone())
                .bind(micros(app.create_time))
                .bind(micros(app.update_time))
                .bind(app.managed_by.as_str())
        }

        pub(crate) async fn create_app(
            &self,
            app: &$crate::store::App,
        ) -> Result<(), $crate::store::StoreError> {
            use $crate::store::error::SqlxResultExt as _;
            let q = Self::bind_new_app(sqlx::query($crate::store::ops_apps::INSERT_APP), app);
            q.execute(&self.pool).await.ctx("create app")?;
            Ok(())
        }

        pub(crate) async fn get_app(
            &self,
            id: &str,
        ) -> Result<Option<$crate::store::App>, $crate::store::StoreError> {
            self.app_where("id", id).await
        }

        pub(crate) async fn get_app_by_client_id(
            &self,
            client_id: &str,
        ) -> Result<Option<$crate::store::App>, $crate::store::StoreError> {
            self.app_where("client_id", client_id).await
        }

        async fn app_where(
            &self,
            column: &'static str,
            value: &str,
        ) -> Result<Option<$crate::store::App>, $crate::store::StoreError> {
            use $crate::store::error::SqlxResultExt as _;
            let sql = format!(
                "SELECT {} FROM apps WHERE {column} = $1",
                $crate::store::ops_apps::APP_COLS
            );
            let row = sqlx::query(&sql)
                .bind(value)
                .fetch_optional(&self.pool)
                .await
                .ctx("get app")?;
            row.as_ref().map(Self::app_row).transpose()
        }

        pub(crate) async fn list_apps(
            &self,
            after: Option<&$crate::store::AppCursor>,
            limit: u32,
        ) -> Result<Vec<$crate::store::App>, $crate::store::StoreError> {
            use $crate::store::error::SqlxResultExt as _;
            let (t, id) = match after {
                Some(c) => ($crate::store::codec::micros(c.create_time), c.id.clone()),
                None => (i64::MIN, String::new()),
            };
            let sql = format!(
                "SELECT {} FROM apps WHERE create_time > $1 OR (create_time = $1 AND id > $2) \
                 ORDER BY create_time, id LIMIT $3",
                $crate::store::ops_apps::APP_COLS
            );
            let rows = sqlx::query(&sql)
                .bind(t)
                .bind(id)
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await
                .ctx("list apps")?;
            rows.iter().map(Self::app_row).collect()
        }

        pub(crate) async fn update_app(
            &self,
            app: &$crate::store::App,
        ) -> Result<(), $crate::store::StoreError> {
            use $crate::store::codec::*;
            use $crate::store::error::SqlxResultExt as _;
            let c = "update app";
            let mut tx = self.begin_write(c).await?;
            let done = sqlx::query($crate::store::ops_apps::UPDATE_APP)
                .bind(app.id.clone())
                .bind(app.display_name.clone())
                .bind(app.description.clone())
                .bind(app.logo_uri.clone())
                .bind(list_to_json(&app.allowed_callback_urls))
                .bind(list_to_json(&app.allowed_logout_urls))
                .bind(list_to_json(&app.allowed_web_origins))
                .bind(list_to_json(&app.scopes))
                .bind(app.skip_consent)
                .bind(app.active)
                .bind(map_to_json(&app.labels))
                .bind(app.updated_by.clone())
                .bind(micros(app.update_time))
                .execute(&mut *tx)
                .await
                .ctx(c)?;
            if done.rows_affected() == 0 {
                return Err($crate::store::StoreError::not_found(format!(
                    "oauth app 'oauthApps/{}' not found",
                    app.id
                )));
            }
            let events = self.deactivate_in_tx(&mut tx, app, c).await?;
            self.notify(&mut tx, &events).await?;
            tx.commit().await.ctx(c)?;
            self.events.publish(&events);
            Ok(())
        }

        /// The event of a change to `app`: for an inactive app, its grants and refresh tokens
        /// are revoked in `tx` (`AppRevoked`); an active one's tokens are validated afresh,
        /// against the scopes it has now (`AppUpdated`).
        async fn deactivate_in_tx(
            &self,
            tx: &mut sqlx::Transaction<'static, $db>,
            app: &$crate::store::App,
            c: &str,
        ) -> Result<Vec<$crate::store::StoreEvent>, $crate::store::StoreError> {
            use $crate::store::error::SqlxResultExt as _;
            if app.active {
                return Ok(vec![$crate::store::StoreEvent::AppUpdated {
                    client_id: app.client_id.clone(),
                }]);
            }
            let now = $crate::store::codec::micros(app.update_time);
            for sql in [
                $crate::store::ops_apps::REVOKE_APP_REFRESH,
                $crate::store::ops_apps::REVOKE_APP_GRANTS,
            ] {
                sqlx::query(sql)
                    .bind(app.client_id.clone())
                    .bind(now)
                    .execute(&mut **tx)
                    .await
                    .ctx(c)?;
            }
            Ok(vec![$crate::store::StoreEvent::AppRevoked {
                client_id: app.client_id.clone(),
            }])
        }

        pub(crate) async fn upsert_config_app(
            &self,
            app: &$crate::store::App,
        ) -> Result<$crate::store::App, $crate::store::StoreError> {
            use $crate::store::error::SqlxResultExt as _;
            let c = "upsert config app";
            let sql = format!(
                "{}{} RETURNING {}",
                $crate::store::ops_apps::INSERT_APP,
                $crate::store::ops_apps::UPSERT_CONFIG_APP_TAIL,
                $crate::store::ops_apps::APP_COLS
            );
            let mut config_app = app.clone();
            config_app.managed_by = $crate::store::ManagedBy::Config;
            let mut tx = self.begin_write(c).await?;
            let row = Self::bind_new_app(sqlx::query(&sql), &config_app)
                .fetch_optional(&mut *tx)
                .await
                .ctx(c)?;
            let Some(row) = row else {
                return Err($crate::store::StoreError::conflict(format!(
                    "client id '{}' belongs to an app managed by the API",
                    app.client_id
                )));
            };
            let stored = Self::app_row(&row)?;
            let events = self.deactivate_in_tx(&mut tx, &stored, c).await?;
            self.notify(&mut tx, &events).await?;
            tx.commit().await.ctx(c)?;
            self.events.publish(&events);
            Ok(stored)
        }

        pub(crate) async fn rotate_app_secret(
            &self,
            id: &str,
            new_hash: $crate::store::SecretHash,
            previous_valid_until: Option<std::time::SystemTime>,
            updated_by: &str,
            now: std::time::SystemTime,
        ) -> Result<$crate::store::App, $crate::store::StoreError> {
            use $crate::store::codec::*;
            use $crate::store::error::SqlxResultExt as _;
            let sql = format!(
                "UPDATE apps SET \
                 previous_secret_hash = CASE WHEN $2 THEN secret_hash ELSE NULL END, \
                 previous_secret_expires_at = $3, secret_hash = $4, updated_by = $5, \
                 update_time = $6 WHERE id = $1 RETURNING {}",
                $crate::store::ops_apps::APP_COLS
            );
            let c = "rotate app secret";
            let mut tx = self.begin_write(c).await?;
            let row = sqlx::query(&sql)
                .bind(id)
                .bind(previous_valid_until.is_some())
                .bind(opt_micros(previous_valid_until))
                .bind(new_hash.0.to_vec())
                .bind(updated_by)
                .bind(micros(now))
                .fetch_optional(&mut *tx)
                .await
                .ctx(c)?;
            let Some(row) = row else {
                return Err($crate::store::StoreError::not_found(format!(
                    "oauth app 'oauthApps/{id}' not found"
                )));
            };
            let app = Self::app_row(&row)?;
            // Announced like any change of the app, so that the replicas' copies used for
            // client authentication (`oauth/caches.rs`) stop accepting a replaced secret.
            let events = vec![$crate::store::StoreEvent::AppUpdated {
                client_id: app.client_id.clone(),
            }];
            self.notify(&mut tx, &events).await?;
            tx.commit().await.ctx(c)?;
            self.events.publish(&events);
            Ok(app)
        }

        pub(crate) async fn delete_app(&self, id: &str) -> Result<(), $crate::store::StoreError> {
            use $crate::store::error::SqlxResultExt as _;
            let c = "delete app";
            let mut tx = self.begin_write(c).await?;
            // Grants, refresh tokens, codes and consents go with it (ON DELETE CASCADE).
            let client_id: Option<String> =
                sqlx::query_scalar("DELETE FROM apps WHERE id = $1 RETURNING client_id")
                    .bind(id)
                    .fetch_optional(&mut *tx)
                    .await
                    .ctx(c)?;
            let Some(client_id) = client_id else {
                return Err($crate::store::StoreError::not_found(format!(
                    "oauth app 'oauthApps/{id}' not found"
                )));
            };
            let events = vec![$crate::store::StoreEvent::AppRevoked { client_id }];
            self.notify(&mut tx, &events).await?;
            tx.commit().await.ctx(c)?;
            self.events.publish(&events);
            Ok(())
        }
    };
}

pub(crate) use apps_ops;
