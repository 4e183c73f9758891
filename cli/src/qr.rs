//! The enrolment link as a QR code drawn with Unicode half blocks, so a
//! phone can scan it off an SSH terminal.

use qrcode::QrCode;
use qrcode::render::unicode::Dense1x2;

/// The QR code of `text`, one string per terminal row. With `colour`, each
/// row is drawn black on white with ANSI escapes, so it scans on dark and
/// light terminals alike; without, the blocks are dark modules on the
/// terminal's own background.
pub fn render(text: &str, colour: bool) -> Result<Vec<String>, String> {
    let code = QrCode::new(text.as_bytes()).map_err(|e| format!("cannot make a QR code: {e}"))?;
    let picture = code
        .render::<Dense1x2>()
        .dark_color(Dense1x2::Dark)
        .light_color(Dense1x2::Light)
        .quiet_zone(true)
        .build();
    Ok(picture
        .lines()
        .map(|row| {
            if colour {
                format!("\x1b[30;107m{row}\x1b[0m")
            } else {
                row.to_string()
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_deep_link_fits_a_terminal() {
        let rows = render(
            "https://t.me/pam_gateway_test_bot?start=0123456789abcdef0123456789abcdef",
            false,
        )
        .expect("qr");
        let width = rows[0].chars().count();
        assert!(rows.iter().all(|r| r.chars().count() == width));
        // Version 4 (33 modules) plus a 4-module quiet zone each side.
        assert!(width <= 45, "{width} columns");
        assert!(rows.len() <= 23, "{} rows", rows.len());
        assert!(rows.iter().any(|r| r.contains('█')));
    }
}
