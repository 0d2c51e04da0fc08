//! NumPy `.npy` files (format 1.0, little-endian f32), for exporting score maps.

use super::{Report, ScoreMap};

/// The bytes of a `.npy` file holding `data` with `shape`.
pub fn npy_bytes(shape: &[usize], data: &[f32]) -> Vec<u8> {
    let dims = match shape {
        [n] => format!("({n},)"),
        _ => format!(
            "({})",
            shape
                .iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {dims}, }}");
    // magic (6) + version (2) + header length (2) + header + '\n' is a multiple of 64
    let total = 10 + header.len() + 1;
    header.push_str(&" ".repeat(total.div_ceil(64) * 64 - total));
    header.push('\n');
    let mut out = Vec::with_capacity(10 + header.len() + data.len() * 4);
    out.extend_from_slice(b"\x93NUMPY\x01\x00");
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    for x in data {
        out.extend_from_slice(&x.to_le_bytes());
    }
    out
}

fn map_npy(m: &ScoreMap) -> Vec<u8> {
    let rows = m.len();
    let cols = m.first().map_or(0, |r| r.len());
    let flat: Vec<f32> = m.iter().flatten().copied().collect();
    npy_bytes(&[rows, cols], &flat)
}

/// Every score map of a report as (file name, bytes):
/// `<method>_<direction>_<heads|neurons>.npy`, shape [layers, components];
/// sites as `<method>_<direction>_<site>.npy` and SAE features as
/// `<method>_<direction>_sae_<hook>.npy` / `…_sae_by_pos_<hook>.npy`.
pub fn report_npy_files(r: &Report) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for (method, dirs) in &r.results {
        for (dir, maps) in dirs {
            for (kind, m) in [("heads", &maps.heads), ("neurons", &maps.neurons)] {
                if let Some(m) = m {
                    out.push((format!("{method}_{dir}_{kind}.npy"), map_npy(m)));
                }
            }
            // the sites' maps with their own shapes ([layer, pos], …)
            for (site, m) in &maps.sites {
                out.push((
                    format!("{method}_{dir}_{site}.npy"),
                    npy_bytes(&m.shape, &m.values),
                ));
            }
            // SAE feature maps: `sae:<hook>` as `sae_<hook>` ([d_sae], [T, d_sae])
            for (key, m) in &maps.features {
                out.push((
                    format!("{method}_{dir}_{}.npy", key.replace(':', "_")),
                    npy_bytes(&m.shape, &m.values),
                ));
            }
        }
    }
    for (dir, d) in &r.ig_convergence_delta {
        for (kind, v) in [("heads", &d.heads), ("neurons", &d.neurons)] {
            if let Some(v) = v {
                out.push((
                    format!("ig_convergence_delta_{dir}_{kind}.npy"),
                    npy_bytes(&[v.len()], v),
                ));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_is_aligned_and_describes_the_array() {
        let b = npy_bytes(&[2, 3], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        let hlen = u16::from_le_bytes([b[8], b[9]]) as usize;
        assert_eq!((10 + hlen) % 64, 0);
        let header = std::str::from_utf8(&b[10..10 + hlen]).unwrap();
        assert!(header.contains("'shape': (2, 3)") && header.ends_with('\n'));
        assert_eq!(b.len(), 10 + hlen + 24);
        assert_eq!(
            f32::from_le_bytes(b[10 + hlen..14 + hlen].try_into().unwrap()),
            1.0
        );
        assert!(std::str::from_utf8(&npy_bytes(&[5], &[0.0; 5])[10..])
            .unwrap()
            .contains("(5,)"));
    }
}
