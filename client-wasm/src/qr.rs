//! The QR code of a room link, as the path data of one SVG `<path>`.
//!
//! The page draws it with the DOM (an `<svg>` element and a `<path>` with a `d` attribute), so
//! no markup is parsed and the Content-Security-Policy needs no exception.

use qrcode::{Color, EcLevel, QrCode};

/// Modules of light margin around the code, the quiet zone that ISO/IEC 18004 requires.
pub const QUIET_ZONE: usize = 4;

/// A QR code ready to draw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QrPath {
    /// Side of the square, in modules, quiet zone included: the SVG `viewBox` size.
    pub size: usize,
    /// SVG path data with one unit square per dark module.
    pub path: String,
}

/// Error from encoding a QR code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot draw a QR code of the link: {0}")]
pub struct QrError(String);

/// Encodes `text` with error correction level M (15 percent), enough for a phone camera
/// reading a screen, and returns its path.
pub fn qr_path(text: &str) -> Result<QrPath, QrError> {
    let code = QrCode::with_error_correction_level(text.as_bytes(), EcLevel::M)
        .map_err(|e| QrError(e.to_string()))?;
    let width = code.width();
    let colors = code.to_colors();

    // One horizontal run of dark modules becomes one rectangle, which keeps the path short.
    let mut path = String::new();
    for y in 0..width {
        let row = &colors[y * width..(y + 1) * width];
        let mut x = 0;
        while x < width {
            if row[x] != Color::Dark {
                x += 1;
                continue;
            }
            let start = x;
            while x < width && row[x] == Color::Dark {
                x += 1;
            }
            let (left, top) = (start + QUIET_ZONE, y + QUIET_ZONE);
            path.push_str(&format!("M{left} {top}h{}v1h-{}z", x - start, x - start));
        }
    }
    Ok(QrPath {
        size: width + 2 * QUIET_ZONE,
        path,
    })
}

/// Returns the dark modules of `text`'s code as rows of booleans, quiet zone excluded; for
/// checking a drawing against the encoder.
pub fn qr_modules(text: &str) -> Result<Vec<Vec<bool>>, QrError> {
    let code = QrCode::with_error_correction_level(text.as_bytes(), EcLevel::M)
        .map_err(|e| QrError(e.to_string()))?;
    let width = code.width();
    Ok(code
        .to_colors()
        .chunks(width)
        .map(|row| row.iter().map(|c| *c == Color::Dark).collect())
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    /// Paints the path's rectangles into a grid, reading the path back as the page's SVG
    /// would draw it.
    fn paint(qr: &QrPath) -> Vec<Vec<bool>> {
        let mut grid = vec![vec![false; qr.size]; qr.size];
        for command in qr.path.split('M').filter(|c| !c.is_empty()) {
            let (position, rest) = command.split_once('h').unwrap();
            let (x, y) = position.split_once(' ').unwrap();
            let (x, y): (usize, usize) = (x.parse().unwrap(), y.parse().unwrap());
            let run: usize = rest.split_once('v').unwrap().0.parse().unwrap();
            for cell in &mut grid[y][x..x + run] {
                assert!(!*cell, "two rectangles cover ({x}, {y})");
                *cell = true;
            }
        }
        grid
    }

    #[test]
    fn path_draws_exactly_dark_modules() {
        let link = "https://chat.example/#AAAAAAAAAAAAAAAAAAAAAA.AAAAAAAA";
        let qr = qr_path(link).unwrap();
        let modules = qr_modules(link).unwrap();
        let width = modules.len();
        assert_eq!(qr.size, width + 2 * QUIET_ZONE);

        let grid = paint(&qr);
        for (y, row) in grid.iter().enumerate() {
            for (x, &dark) in row.iter().enumerate() {
                let inside = (QUIET_ZONE..QUIET_ZONE + width).contains(&x)
                    && (QUIET_ZONE..QUIET_ZONE + width).contains(&y);
                let expected = inside && modules[y - QUIET_ZONE][x - QUIET_ZONE];
                assert_eq!(dark, expected, "module ({x}, {y})");
            }
        }
    }

    /// Draws the path at 4 pixels a module, as the page's SVG shows it, and decodes the
    /// picture with an independent QR reader.
    #[cfg(not(target_arch = "wasm32"))]
    #[test]
    fn drawing_decodes_to_link() {
        const PIXELS_PER_MODULE: usize = 4;
        let link = "http://127.0.0.1:8080/#4Kg1oLP4ETsr4ygH6Aq_5g.AbCdEf12";
        let qr = qr_path(link).unwrap();
        let grid = paint(&qr);
        let side = qr.size * PIXELS_PER_MODULE;
        let mut image = rqrr::PreparedImage::prepare_from_greyscale(side, side, |x, y| {
            if grid[y / PIXELS_PER_MODULE][x / PIXELS_PER_MODULE] {
                0
            } else {
                255
            }
        });
        let grids = image.detect_grids();
        assert_eq!(grids.len(), 1, "QR codes found in the drawing");
        let (_, content) = grids[0].decode().unwrap();
        assert_eq!(content, link);
    }

    #[test]
    fn long_link_still_encodes() {
        let link = format!(
            "https://{}.example/#AAAAAAAAAAAAAAAAAAAAAA",
            "a".repeat(200)
        );
        assert!(qr_path(&link).is_ok());
        assert!(qr_path(&"a".repeat(5000)).is_err());
    }
}
