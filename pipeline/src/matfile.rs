//! Reading piano rolls out of a MATLAB MAT-file (level 5, "v5"/"v7", little-endian): the format
//! of the published benchmark rolls (Boulanger-Lewandowski et al. 2012), where each split is a
//! cell array of T × 88 matrices of 0/1.
//!
//! Only what such files use is read: the 128-byte header, zlib-compressed elements, and
//! `miMATRIX` elements that are cell arrays or real numeric matrices (any numeric class and
//! storage type). Everything else is skipped by its length, and everything that does not hold
//! together (lengths past the end, a bad zlib stream, values other than 0 and 1) is an error
//! that names the variable, the cell and where in the file, never a panic.
//!
//! The layout is MathWorks' "MAT-File Format" document, level 5: every data element is a tag
//! (type, byte count; or the "small element" form with both in one 4-byte word and the data in
//! the next 4) followed by its data padded to 8 bytes.

use std::io::Read;

use pianoroll::roll::{Frame, KEY_COUNT, PianoRoll};

#[derive(Debug, thiserror::Error)]
pub enum MatError {
    #[error("not a level-5 MAT-file: {0}")]
    Header(String),
    #[error("byte {offset}: {problem}")]
    Structure { offset: usize, problem: String },
    #[error("variable {variable:?}, cell {cell}: {problem}")]
    Piece {
        variable: String,
        cell: usize,
        problem: String,
    },
    #[error("no variable {0:?} in the file")]
    Missing(String),
}

// Data types of level-5 elements.
const MI_INT8: u32 = 1;
const MI_UINT8: u32 = 2;
const MI_INT16: u32 = 3;
const MI_UINT16: u32 = 4;
const MI_INT32: u32 = 5;
const MI_UINT32: u32 = 6;
const MI_SINGLE: u32 = 7;
const MI_DOUBLE: u32 = 9;
const MI_INT64: u32 = 12;
const MI_UINT64: u32 = 13;
const MI_MATRIX: u32 = 14;
const MI_COMPRESSED: u32 = 15;

// Array classes (low byte of the array flags).
const MX_CELL: u8 = 1;
const MX_STRUCT: u8 = 2;
const MX_OBJECT: u8 = 3;
const MX_CHAR: u8 = 4;
const MX_SPARSE: u8 = 5;
const COMPLEX_FLAG: u32 = 0x0800;

/// A decoded array: what the rolls need of MATLAB's types.
#[derive(Debug)]
pub enum Array {
    /// A real numeric matrix, column-major, values as f64 (exact for every integer class that
    /// holds 0/1 rolls).
    Numeric {
        dims: Vec<usize>,
        values: Vec<f64>,
    },
    Cell {
        dims: Vec<usize>,
        cells: Vec<Array>,
    },
    /// A class this reader does not decode (struct, char, sparse, …), by class number.
    Other(u8),
}

/// One data element: its type and its bytes.
struct Element<'a> {
    kind: u32,
    data: &'a [u8],
    /// Offset of the element's tag in the buffer it came from (for messages).
    offset: usize,
}

/// Bounds-checked reading of consecutive elements in `bytes`.
struct Elements<'a> {
    bytes: &'a [u8],
    at: usize,
    /// Added to offsets in messages (the position of `bytes` in its file, when known).
    base: usize,
}

fn u32_at(bytes: &[u8], at: usize) -> Option<u32> {
    let word = bytes.get(at..at + 4)?;
    Some(u32::from_le_bytes(word.try_into().expect("4 bytes")))
}

impl<'a> Elements<'a> {
    fn new(bytes: &'a [u8], base: usize) -> Elements<'a> {
        Elements { bytes, at: 0, base }
    }

    fn error(&self, offset: usize, problem: impl Into<String>) -> MatError {
        MatError::Structure {
            offset: self.base + offset,
            problem: problem.into(),
        }
    }

    /// The next element, or `None` at the end.
    fn next_element(&mut self) -> Result<Option<Element<'a>>, MatError> {
        if self.at >= self.bytes.len() {
            return Ok(None);
        }
        let offset = self.at;
        let first = u32_at(self.bytes, offset)
            .ok_or_else(|| self.error(offset, "truncated element tag"))?;
        if first >> 16 != 0 {
            // Small element: type and size in one word, at most 4 bytes of data in the next.
            let (kind, size) = (first & 0xffff, (first >> 16) as usize);
            if size > 4 {
                return Err(self.error(offset, format!("small element of {size} bytes")));
            }
            let data = self
                .bytes
                .get(offset + 4..offset + 4 + size)
                .ok_or_else(|| self.error(offset, "truncated small element"))?;
            self.at = offset + 8;
            return Ok(Some(Element { kind, data, offset }));
        }
        let size = u32_at(self.bytes, offset + 4)
            .ok_or_else(|| self.error(offset, "truncated element tag"))?
            as usize;
        let start = offset + 8;
        let data = self.bytes.get(start..start + size).ok_or_else(|| {
            self.error(
                offset,
                format!(
                    "element of {size} bytes runs past the end ({} left)",
                    self.bytes.len() - start.min(self.bytes.len())
                ),
            )
        })?;
        // Elements are padded to 8 bytes; compressed ones are not.
        self.at = if first == MI_COMPRESSED {
            start + size
        } else {
            start + size.div_ceil(8) * 8
        };
        Ok(Some(Element {
            kind: first,
            data,
            offset,
        }))
    }

    /// The next element, which must exist.
    fn expect(&mut self, what: &str) -> Result<Element<'a>, MatError> {
        let at = self.at;
        self.next_element()?
            .ok_or_else(|| self.error(at, format!("missing {what}")))
    }
}

/// The numbers of a numeric data element as f64.
fn numbers(element: &Element) -> Result<Vec<f64>, String> {
    fn read<const N: usize>(data: &[u8], convert: impl Fn([u8; N]) -> f64) -> Vec<f64> {
        data.chunks_exact(N)
            .map(|c| convert(c.try_into().expect("N bytes")))
            .collect()
    }
    let data = element.data;
    Ok(match element.kind {
        MI_INT8 => read::<1>(data, |b| f64::from(i8::from_le_bytes(b))),
        MI_UINT8 => read::<1>(data, |b| f64::from(b[0])),
        MI_INT16 => read::<2>(data, |b| f64::from(i16::from_le_bytes(b))),
        MI_UINT16 => read::<2>(data, |b| f64::from(u16::from_le_bytes(b))),
        MI_INT32 => read::<4>(data, |b| f64::from(i32::from_le_bytes(b))),
        MI_UINT32 => read::<4>(data, |b| f64::from(u32::from_le_bytes(b))),
        MI_SINGLE => read::<4>(data, |b| f64::from(f32::from_le_bytes(b))),
        MI_DOUBLE => read::<8>(data, f64::from_le_bytes),
        MI_INT64 => read::<8>(data, |b| i64::from_le_bytes(b) as f64),
        MI_UINT64 => read::<8>(data, |b| u64::from_le_bytes(b) as f64),
        other => return Err(format!("data of type {other} is not numeric")),
    })
}

/// Decode the body of a `miMATRIX` element.
fn matrix(bytes: &[u8], base: usize) -> Result<(String, Array), MatError> {
    if bytes.is_empty() {
        // An empty matrix may be written as a bare tag.
        let empty = Array::Numeric {
            dims: vec![0, 0],
            values: Vec::new(),
        };
        return Ok((String::new(), empty));
    }
    let mut parts = Elements::new(bytes, base);
    let flags = parts.expect("array flags")?;
    let flags_word = u32_at(flags.data, 0)
        .ok_or_else(|| parts.error(flags.offset, "array flags shorter than 4 bytes"))?;
    let class = (flags_word & 0xff) as u8;
    let dims_element = parts.expect("dimensions")?;
    let dims: Vec<usize> = numbers(&dims_element)
        .map_err(|problem| parts.error(dims_element.offset, problem))?
        .into_iter()
        .map(|d| d.max(0.0) as usize)
        .collect();
    let name_element = parts.expect("array name")?;
    let name = String::from_utf8_lossy(name_element.data).into_owned();
    let count = dims.iter().try_fold(1usize, |n, &d| n.checked_mul(d));
    let count = count.ok_or_else(|| parts.error(dims_element.offset, "dimensions overflow"))?;
    let array = match class {
        MX_CELL => {
            // The count is the file's claim: reserve for a few, not for what it says.
            let mut cells = Vec::with_capacity(count.min(1 << 10));
            for _ in 0..count {
                let cell = parts.expect("a cell")?;
                if cell.kind != MI_MATRIX {
                    return Err(parts.error(cell.offset, "a cell that is not a matrix"));
                }
                let cell_base = base + cell.offset + 8;
                cells.push(matrix(cell.data, cell_base)?.1);
            }
            Array::Cell { dims, cells }
        }
        MX_STRUCT | MX_OBJECT | MX_CHAR | MX_SPARSE => Array::Other(class),
        6..=15 => {
            if flags_word & COMPLEX_FLAG != 0 {
                return Err(parts.error(flags.offset, "complex matrices are not rolls"));
            }
            let real = parts.expect("the real part")?;
            let values = numbers(&real).map_err(|problem| parts.error(real.offset, problem))?;
            if values.len() != count {
                return Err(parts.error(
                    real.offset,
                    format!("{} values for dimensions {dims:?}", values.len()),
                ));
            }
            Array::Numeric { dims, values }
        }
        other => Array::Other(other),
    };
    Ok((name, array))
}

/// The default of the largest element a compressed element may inflate to: four times the
/// largest in the published rolls (Nottingham's `traindata`, 15.6 MB). zlib packs a run of
/// zeros a thousandfold, so without a bound a 1.5 MB file can ask for gigabytes.
pub const DEFAULT_MAX_ELEMENT_BYTES: usize = 64_000_000;

/// Every variable of a MAT-file, by name, in file order. A compressed element that inflates to
/// more than `max_element_bytes` is an error that says so (and the decoded numbers take up to
/// eight times that again, as f64).
pub fn read_variables(
    bytes: &[u8],
    max_element_bytes: usize,
) -> Result<Vec<(String, Array)>, MatError> {
    const HEADER: usize = 128;
    if bytes.len() < HEADER || !bytes.starts_with(b"MATLAB 5.0 MAT-file") {
        return Err(MatError::Header(
            "it does not start with \"MATLAB 5.0 MAT-file\"".into(),
        ));
    }
    match &bytes[126..128] {
        b"IM" => {}
        b"MI" => {
            return Err(MatError::Header(
                "big-endian files are not supported".into(),
            ));
        }
        other => {
            return Err(MatError::Header(format!("bad endian indicator {other:?}")));
        }
    }
    let mut elements = Elements::new(&bytes[HEADER..], HEADER);
    let mut variables = Vec::new();
    while let Some(element) = elements.next_element()? {
        let at = HEADER + element.offset;
        match element.kind {
            MI_COMPRESSED => {
                let mut inflated = Vec::new();
                // One byte past the limit tells an element at the limit from one beyond it.
                flate2::read::ZlibDecoder::new(element.data)
                    .take(max_element_bytes as u64 + 1)
                    .read_to_end(&mut inflated)
                    .map_err(|e| MatError::Structure {
                        offset: at,
                        problem: format!("compressed element: {e}"),
                    })?;
                if inflated.len() > max_element_bytes {
                    return Err(MatError::Structure {
                        offset: at,
                        problem: format!(
                            "compressed element inflates to more than {:.1} MB, the limit \
                             (--max-element-mb)",
                            max_element_bytes as f64 / 1e6
                        ),
                    });
                }
                // One element inside, usually a matrix; offsets there are within the inflated
                // bytes, so messages name the compressed element's position.
                let mut inner = Elements::new(&inflated, at);
                while let Some(element) = inner.next_element()? {
                    if element.kind == MI_MATRIX {
                        variables.push(matrix(element.data, at)?);
                    }
                }
            }
            MI_MATRIX => variables.push(matrix(element.data, at + 8)?),
            _ => {} // other top-level data carries no variable
        }
    }
    Ok(variables)
}

/// The rolls in the cell array `variable`: each cell a T × 88 matrix of 0 and 1 (frames down,
/// keys across, lowest key first).
pub fn cell_rolls(
    variables: &[(String, Array)],
    variable: &str,
) -> Result<Vec<PianoRoll>, MatError> {
    let (_, array) = variables
        .iter()
        .find(|(name, _)| name == variable)
        .ok_or_else(|| MatError::Missing(variable.to_owned()))?;
    let piece_error = |cell: usize, problem: String| MatError::Piece {
        variable: variable.to_owned(),
        cell,
        problem,
    };
    let Array::Cell { cells, .. } = array else {
        return Err(piece_error(0, "not a cell array".into()));
    };
    cells
        .iter()
        .enumerate()
        .map(|(cell, array)| {
            let Array::Numeric { dims, values } = array else {
                return Err(piece_error(cell, "not a numeric matrix".into()));
            };
            let [frames, keys] = dims[..] else {
                return Err(piece_error(
                    cell,
                    format!("dimensions {dims:?}, not T × 88"),
                ));
            };
            if keys != KEY_COUNT {
                return Err(piece_error(
                    cell,
                    format!("{keys} columns, not {KEY_COUNT}"),
                ));
            }
            (0..frames)
                .map(|t| {
                    let mut frame = Frame::SILENT;
                    for key in 0..KEY_COUNT {
                        // Column-major: element (t, key) is at key · T + t.
                        match values[key * frames + t] {
                            0.0 => {}
                            1.0 => frame.insert(key),
                            other => {
                                return Err(piece_error(
                                    cell,
                                    format!("frame {t}, key {key}: value {other}, not 0 or 1"),
                                ));
                            }
                        }
                    }
                    Ok(frame)
                })
                .collect::<Result<Vec<_>, _>>()
                .map(PianoRoll::from_frames)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A data element with its tag, padded to 8 bytes.
    fn read(bytes: &[u8]) -> Result<Vec<(String, Array)>, MatError> {
        read_variables(bytes, DEFAULT_MAX_ELEMENT_BYTES)
    }

    fn element(kind: u32, data: &[u8]) -> Vec<u8> {
        let mut out = kind.to_le_bytes().to_vec();
        out.extend((data.len() as u32).to_le_bytes());
        out.extend(data);
        out.resize(out.len().div_ceil(8) * 8, 0);
        out
    }

    /// A miMATRIX of class uint8 holding `rows` × `cols` values (column-major), named `name`.
    fn uint8_matrix(name: &str, rows: usize, cols: usize, values: &[u8]) -> Vec<u8> {
        let mut body = element(MI_UINT32, &[9, 0, 0, 0, 0, 0, 0, 0]);
        let dims: Vec<u8> = [rows as i32, cols as i32]
            .iter()
            .flat_map(|d| d.to_le_bytes())
            .collect();
        body.extend(element(MI_INT32, &dims));
        body.extend(element(MI_INT8, name.as_bytes()));
        body.extend(element(MI_UINT8, values));
        element(MI_MATRIX, &body)
    }

    fn cell_array(name: &str, cells: &[Vec<u8>]) -> Vec<u8> {
        let mut body = element(MI_UINT32, &[1, 0, 0, 0, 0, 0, 0, 0]);
        let dims: Vec<u8> = [1i32, cells.len() as i32]
            .iter()
            .flat_map(|d| d.to_le_bytes())
            .collect();
        body.extend(element(MI_INT32, &dims));
        body.extend(element(MI_INT8, name.as_bytes()));
        for cell in cells {
            body.extend(cell);
        }
        element(MI_MATRIX, &body)
    }

    fn file(elements: &[Vec<u8>]) -> Vec<u8> {
        let mut bytes = b"MATLAB 5.0 MAT-file, written by a test".to_vec();
        bytes.resize(124, b' ');
        bytes.extend([0x00, 0x01, b'I', b'M']);
        for e in elements {
            bytes.extend(e);
        }
        bytes
    }

    fn compressed(element: &[u8]) -> Vec<u8> {
        use std::io::Write;
        let mut encoder =
            flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        encoder.write_all(element).unwrap();
        let data = encoder.finish().unwrap();
        let mut out = MI_COMPRESSED.to_le_bytes().to_vec();
        out.extend((data.len() as u32).to_le_bytes());
        out.extend(data);
        out
    }

    /// Two pieces: 3 frames with key 0 in frame 0 and key 87 in frame 2; 1 silent frame.
    fn two_pieces() -> Vec<Vec<u8>> {
        let mut first = vec![0u8; 3 * 88];
        first[0] = 1; // (t 0, key 0)
        first[87 * 3 + 2] = 1; // (t 2, key 87)
        vec![
            uint8_matrix("", 3, 88, &first),
            uint8_matrix("", 1, 88, &[0; 88]),
        ]
    }

    #[test]
    fn reads_cell_arrays_of_rolls_plain_and_compressed() {
        let plain = file(&[cell_array("testdata", &two_pieces())]);
        let zipped = file(&[
            compressed(&cell_array("traindata", &two_pieces())),
            compressed(&cell_array("testdata", &two_pieces())),
        ]);
        for bytes in [plain, zipped] {
            let variables = read(&bytes).unwrap();
            let rolls = cell_rolls(&variables, "testdata").unwrap();
            assert_eq!(rolls.len(), 2);
            let frames = rolls[0].frames();
            assert_eq!(frames.len(), 3);
            assert_eq!(frames[0].keys().collect::<Vec<_>>(), [0]);
            assert!(frames[1].is_empty());
            assert_eq!(frames[2].keys().collect::<Vec<_>>(), [87]);
            assert_eq!(rolls[1].len(), 1);
        }
    }

    #[test]
    fn broken_files_are_errors_that_say_where() {
        let good = file(&[compressed(&cell_array("testdata", &two_pieces()))]);
        // Every truncation is an error (or, cut between elements, a file with fewer variables),
        // never a panic.
        for cut in 0..good.len() {
            let _ = read(&good[..cut]).and_then(|v| cell_rolls(&v, "testdata"));
        }
        let error = read(&good[..good.len() - 5]).unwrap_err();
        assert!(error.to_string().contains("byte 128"), "{error}");
        assert!(read(b"not a mat file").is_err());

        let mut bad_value = two_pieces();
        bad_value[1] = uint8_matrix("", 1, 88, &[2; 88]);
        let variables = read(&file(&[cell_array("testdata", &bad_value)])).unwrap();
        let error = cell_rolls(&variables, "testdata").unwrap_err().to_string();
        assert!(
            error.contains("\"testdata\", cell 1") && error.contains("value 2"),
            "{error}"
        );
        let error = cell_rolls(&variables, "validdata").unwrap_err().to_string();
        assert!(error.contains("no variable \"validdata\""), "{error}");
        let narrow = file(&[cell_array("testdata", &[uint8_matrix("", 2, 12, &[0; 24])])]);
        let error = cell_rolls(&read(&narrow).unwrap(), "testdata").unwrap_err();
        assert!(error.to_string().contains("12 columns"), "{error}");
    }

    #[test]
    fn a_compressed_element_inflates_only_up_to_the_limit() {
        // 100 MB of zeros under a plausible matrix tag packs into about 100 KB.
        let mut bomb = 14u32.to_le_bytes().to_vec();
        bomb.extend(100_000_000u32.to_le_bytes());
        bomb.resize(100_000_008, 0);
        let file = file(&[compressed(&bomb)]);
        assert!(file.len() < 200_000, "{} bytes", file.len());
        let error = read(&file).unwrap_err().to_string();
        assert!(
            error.contains("byte 128") && error.contains("more than 64.0 MB"),
            "{error}"
        );
        // A limit above it lets the same element through to the matrix reader, which then
        // names what is wrong with the zeros.
        let error = read_variables(&file, 200 << 20).unwrap_err().to_string();
        assert!(!error.contains("inflates"), "{error}");
    }
}
