//! CSV exports of list endpoints (`format=csv`).

use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};

use super::error::ApiError;
use super::vehicles::page;

/// Rows an export holds at most.
pub const MAX_ROWS: i64 = 10_000;

/// `format=csv` exports up to [`MAX_ROWS`] rows from the start; otherwise a page.
/// Returns (csv?, limit, offset).
pub fn listing(format: Option<&str>, limit: Option<i64>, offset: Option<i64>) -> Result<(bool, i64, i64), ApiError> {
    match format {
        None | Some("json") => page(limit, offset).map(|(l, o)| (false, l, o)),
        Some("csv") => Ok((true, MAX_ROWS, 0)),
        Some(other) => Err(ApiError::invalid_query(format!("format must be json or csv, got {other:?}"))),
    }
}

/// One CSV field, quoted when it needs to be. Cells that a spreadsheet would run as a formula
/// are prefixed with a quote.
pub fn field(raw: &str) -> String {
    let value = if raw.starts_with(['=', '+', '-', '@']) { format!("'{raw}") } else { raw.to_owned() };
    if value.contains([',', '"', '\n', '\r']) { format!("\"{}\"", value.replace('"', "\"\"")) } else { value }
}

pub fn response(filename: &str, body: &str) -> Response {
    let mut response = body.to_owned().into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/csv; charset=utf-8"));
    if let Ok(value) = HeaderValue::from_str(&format!("attachment; filename=\"{filename}\"")) {
        headers.insert(header::CONTENT_DISPOSITION, value);
    }
    response
}

/// A header line and one line per row.
pub fn document(header_line: &str, rows: impl IntoIterator<Item = Vec<String>>) -> String {
    let mut out = format!("{header_line}\n");
    for row in rows {
        out.push_str(&row.iter().map(|f| field(f)).collect::<Vec<_>>().join(","));
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_quoted_when_needed_and_formulas_are_defused() {
        assert_eq!(field("plain"), "plain");
        assert_eq!(field("a,b"), "\"a,b\"");
        assert_eq!(field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(field("=SUM(A1)"), "'=SUM(A1)");
        assert_eq!(document("a,b", [vec!["1".into(), "x\ny".into()]]), "a,b\n1,\"x\ny\"\n");
    }
}
