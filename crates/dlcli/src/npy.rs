//! NumPy's `.npy` format (version 1.0) for float arrays: what people who post-process an
//! attribution in Python load with `numpy.load`, and a baseline they prepared there.

use std::path::Path;

use anyhow::{Context, Result, bail};

const MAGIC: &[u8] = b"\x93NUMPY";

/// Writes `values` as a little-endian float32 array of `shape` (C order).
pub fn write(path: &Path, shape: &[usize], values: &[f32]) -> Result<()> {
    let dims: Vec<String> = shape.iter().map(usize::to_string).collect();
    let tuple = match dims.len() {
        1 => format!("({},)", dims[0]),
        _ => format!("({})", dims.join(", ")),
    };
    let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {tuple}, }}");
    // The magic, version and length take 10 bytes; the header ends in '\n' at a multiple of 64.
    let padded = (10 + header.len() + 1).div_ceil(64) * 64;
    header.extend(std::iter::repeat_n(' ', padded - 10 - header.len() - 1));
    header.push('\n');
    let mut bytes = Vec::with_capacity(padded + 4 * values.len());
    bytes.extend_from_slice(MAGIC);
    bytes.extend_from_slice(&[1, 0]);
    bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
    bytes.extend_from_slice(header.as_bytes());
    values.iter().for_each(|v| bytes.extend_from_slice(&v.to_le_bytes()));
    std::fs::write(path, bytes).with_context(|| format!("writing {}", path.display()))
}

/// A float32 or float64 array's shape and values, in C order.
pub fn read(path: &Path) -> Result<(Vec<usize>, Vec<f32>)> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let fail = |what: &str| {
        anyhow::anyhow!("{}: {what}; save it with numpy.save(path, array.astype('float32'))", path.display())
    };
    if bytes.len() < 10 || &bytes[..6] != MAGIC {
        return Err(fail("not a .npy file"));
    }
    let (length, start) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 if bytes.len() >= 12 => (u32::from_le_bytes(bytes[8..12].try_into().unwrap()) as usize, 12),
        _ => return Err(fail("an unknown .npy version")),
    };
    let header = bytes.get(start..start + length).ok_or_else(|| fail("a header longer than the file"))?;
    let header = String::from_utf8_lossy(header);
    let field = |key: &str| -> Option<String> {
        let at = header.find(&format!("'{key}'"))? + key.len() + 2;
        let rest = header[at..].trim_start().strip_prefix(':')?.trim_start();
        let end = if rest.starts_with('(') { rest.find(')')? + 1 } else { rest.find([',', '}'])? };
        Some(rest[..end].trim().trim_matches('\'').to_string())
    };
    if field("fortran_order").as_deref() != Some("False") {
        return Err(fail("a Fortran-order array"));
    }
    let shape: Vec<usize> = field("shape")
        .ok_or_else(|| fail("no shape in the header"))?
        .trim_matches(|c| c == '(' || c == ')')
        .split(',')
        .filter(|d| !d.trim().is_empty())
        .map(|d| d.trim().parse::<usize>().map_err(|_| fail("a shape that is not whole numbers")))
        .collect::<Result<_>>()?;
    let count = shape.iter().try_fold(1usize, |n, &d| n.checked_mul(d)).ok_or_else(|| fail("an absurd shape"))?;
    let data = &bytes[start + length..];
    let values: Vec<f32> = match field("descr").as_deref() {
        Some("<f4") if data.len() == 4 * count => {
            data.chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect()
        }
        Some("<f8") if data.len() == 8 * count => {
            data.chunks_exact(8).map(|b| f64::from_le_bytes(b.try_into().unwrap()) as f32).collect()
        }
        Some("<f4" | "<f8") => return Err(fail(&format!("{} data bytes for shape {shape:?}", data.len()))),
        other => bail!("{}: dtype {other:?}; give float32 or float64 (little-endian)", path.display()),
    };
    Ok((shape, values))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arrays_come_back_as_written_with_numpys_header() {
        let path = std::env::temp_dir().join(format!("dlcli-npy-{}.npy", std::process::id()));
        let values: Vec<f32> = (0..24).map(|i| i as f32 * 0.5 - 3.0).collect();
        write(&path, &[2, 3, 4], &values).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        // What numpy.save writes for np.zeros((2, 3, 4), dtype='<f4'): a 118-byte header.
        assert_eq!(&bytes[10..64], b"{'descr': '<f4', 'fortran_order': False, 'shape': (2, ".as_slice());
        assert_eq!(bytes.len(), 128 + 4 * 24);
        assert_eq!(read(&path).unwrap(), (vec![2, 3, 4], values));
        std::fs::write(&path, &bytes[..200]).unwrap();
        assert!(read(&path).unwrap_err().to_string().contains("data bytes for shape [2, 3, 4]"));
        std::fs::remove_file(&path).unwrap();
    }
}
