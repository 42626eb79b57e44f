//! One error type for every handler. Users get a calm page in Russian; the cause chain of an
//! unexpected error goes to the log only.

use askama::Template;
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// Missing, or outside the user's scope: both answer 404, so that an out-of-scope
    /// record cannot be told from a missing one.
    #[error("not found")]
    NotFound,
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

impl From<sqlx::Error> for AppError {
    fn from(error: sqlx::Error) -> Self {
        Self::Unexpected(error.into())
    }
}

pub type AppResult<T> = Result<T, AppError>;

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage {
    title: &'static str,
    message: &'static str,
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let (status, page) = match &self {
            AppError::NotFound => (
                StatusCode::NOT_FOUND,
                ErrorPage {
                    title: "Страница не найдена",
                    message: "Такой страницы нет, или у вас нет к ней доступа. Проверьте адрес или вернитесь на главную.",
                },
            ),
            AppError::Unexpected(error) => {
                tracing::error!(error = format!("{error:#}"), "request failed");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    ErrorPage {
                        title: "Что-то пошло не так",
                        message: "Запрос не выполнен, данные не изменены. Попробуйте ещё раз через минуту; если ошибка повторится, сообщите администратору время ошибки.",
                    },
                )
            }
        };
        match page.render() {
            Ok(body) => (status, Html(body)).into_response(),
            Err(_) => status.into_response(),
        }
    }
}
