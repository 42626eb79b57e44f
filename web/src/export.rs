//! Table exports: CSV for Excel (UTF-8 with a byte-order mark, semicolons — Russian Excel's
//! list separator) and XLSX. Cells that a spreadsheet would run as a formula are neutralised
//! in CSV (`'=…`); XLSX cells are written as strings, which Excel never evaluates.

use axum::http::header;
use axum::response::{IntoResponse, Response};

use crate::error::AppError;

/// A text cell safe to open in a spreadsheet. A plain number (`-22.6`) stays a number.
pub fn csv_cell(value: &str) -> String {
    let number = value.parse::<f64>().is_ok_and(f64::is_finite)
        && value
            .bytes()
            .all(|b| b.is_ascii_digit() || b == b'-' || b == b'.');
    if !number && value.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{value}")
    } else {
        value.to_owned()
    }
}

pub fn csv(headers: &[String], rows: &[Vec<String>]) -> Result<Vec<u8>, AppError> {
    let fail = |e: csv::Error| AppError::Unexpected(e.into());
    let mut writer = csv::WriterBuilder::new()
        .delimiter(b';')
        .from_writer(vec![0xEF, 0xBB, 0xBF]);
    writer.write_record(headers).map_err(fail)?;
    for row in rows {
        writer
            .write_record(row.iter().map(|cell| csv_cell(cell)))
            .map_err(fail)?;
    }
    writer
        .into_inner()
        .map_err(|e| AppError::Unexpected(anyhow::anyhow!("{e}")))
}

pub fn xlsx(sheet: &str, headers: &[String], rows: &[Vec<String>]) -> Result<Vec<u8>, AppError> {
    workbook(sheet, headers, rows, false)
}

/// As [`xlsx`], with whole numbers (`1250`, `-3`) written as numbers a spreadsheet can sum.
pub fn xlsx_numbers(
    sheet: &str,
    headers: &[String],
    rows: &[Vec<String>],
) -> Result<Vec<u8>, AppError> {
    workbook(sheet, headers, rows, true)
}

/// A cell that is a plain whole number (no leading zero, no sign but minus).
fn whole_number(cell: &str) -> Option<f64> {
    let value: i64 = cell.parse().ok()?;
    (value.to_string() == cell && value.unsigned_abs() < (1 << 53)).then_some(value as f64)
}

fn workbook(
    sheet: &str,
    headers: &[String],
    rows: &[Vec<String>],
    numbers: bool,
) -> Result<Vec<u8>, AppError> {
    use rust_xlsxwriter::{Format, Workbook};
    let fail = |e: rust_xlsxwriter::XlsxError| AppError::Unexpected(e.into());
    let mut workbook = Workbook::new();
    let bold = Format::new().set_bold();
    let worksheet = workbook.add_worksheet();
    worksheet.set_name(sheet).map_err(fail)?;
    for (col, title) in headers.iter().enumerate() {
        worksheet
            .write_string_with_format(0, col as u16, title, &bold)
            .map_err(fail)?;
    }
    for (i, row) in rows.iter().enumerate() {
        for (col, cell) in row.iter().enumerate() {
            let (row, col) = ((i + 1) as u32, col as u16);
            match whole_number(cell).filter(|_| numbers) {
                Some(number) => worksheet.write_number(row, col, number),
                None => worksheet.write_string(row, col, cell),
            }
            .map_err(fail)?;
        }
    }
    worksheet.set_freeze_panes(1, 0).map_err(fail)?;
    worksheet.autofit();
    workbook.save_to_buffer().map_err(fail)
}

/// The file as a download.
pub fn download(body: Vec<u8>, filename: &str) -> Response {
    let content_type = if filename.ends_with(".xlsx") {
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    } else {
        "text/csv; charset=utf-8"
    };
    (
        [
            (header::CONTENT_TYPE, content_type.to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{filename}\""),
            ),
        ],
        body,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::csv_cell;

    #[test]
    fn formulas_are_neutralised_and_numbers_kept() {
        assert_eq!(
            csv_cell("=HYPERLINK(\"http://x\")"),
            "'=HYPERLINK(\"http://x\")"
        );
        assert_eq!(csv_cell("-1+2"), "'-1+2");
        assert_eq!(csv_cell("+7 999"), "'+7 999");
        assert_eq!(csv_cell("@SUM(A1)"), "'@SUM(A1)");
        assert_eq!(csv_cell("-22.6"), "-22.6");
        assert_eq!(csv_cell("-3"), "-3");
        assert_eq!(csv_cell("Казань"), "Казань");
    }
}
