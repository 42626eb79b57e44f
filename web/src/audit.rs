//! The access log: reads of personal data, exports, refused accesses and administrative acts
//! on people and accounts — who, when, which record, from where. Never the data itself.
//! Commands need no row here: they are in the event log with their actor.

use crate::auth::guard::Viewer;
use crate::AppState;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// A page showing one record's personal data.
    View,
    /// A list showing personal data of several records.
    List,
    /// A file with personal data.
    Export,
    /// A route or record the viewer may not use.
    Refused,
    /// A person's personal data was erased.
    Erase,
    /// A locked reporting week was opened for filing.
    Unlock,
}

impl Action {
    pub fn code(self) -> &'static str {
        match self {
            Action::View => "view",
            Action::List => "list",
            Action::Export => "export",
            Action::Refused => "refused",
            Action::Erase => "erase",
            Action::Unlock => "unlock",
        }
    }
    pub const ALL: [Action; 6] = [
        Action::View,
        Action::List,
        Action::Export,
        Action::Refused,
        Action::Erase,
        Action::Unlock,
    ];
}

/// Appends one row. The caller fails the request if this fails: a read that cannot be
/// logged is not served.
pub async fn record(
    state: &AppState,
    viewer: &Viewer,
    action: Action,
    record_type: Option<&str>,
    record_id: Option<&str>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO access.access_log \
                (user_id, login, action, record_type, record_id, path, address) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(viewer.user.as_ref().map(|u| u.id))
    .bind(viewer.user.as_ref().map(|u| u.login.clone()))
    .bind(action.code())
    .bind(record_type)
    .bind(record_id)
    .bind(viewer.path.chars().take(500).collect::<String>())
    .bind(&viewer.address)
    .execute(state.log.pool())
    .await?;
    Ok(())
}

/// A record asked for by id: absent or out of scope (`None`) is logged as a refused access
/// and answered 404, so the two cannot be told apart.
pub async fn found<T>(
    state: &AppState,
    viewer: &Viewer,
    record_type: &str,
    id: uuid::Uuid,
    record: Option<T>,
) -> Result<T, crate::error::AppError> {
    match record {
        Some(record) => Ok(record),
        None => {
            record_one(state, viewer, Action::Refused, record_type, id).await?;
            Err(crate::error::AppError::NotFound)
        }
    }
}

/// As [`found`], and a record found is logged as viewed.
pub async fn viewed<T>(
    state: &AppState,
    viewer: &Viewer,
    record_type: &str,
    id: uuid::Uuid,
    record: Option<T>,
) -> Result<T, crate::error::AppError> {
    let record = found(state, viewer, record_type, id, record).await?;
    record_one(state, viewer, Action::View, record_type, id).await?;
    Ok(record)
}

async fn record_one(
    state: &AppState,
    viewer: &Viewer,
    action: Action,
    record_type: &str,
    id: uuid::Uuid,
) -> Result<(), sqlx::Error> {
    record(
        state,
        viewer,
        action,
        Some(record_type),
        Some(&id.to_string()),
    )
    .await
}
