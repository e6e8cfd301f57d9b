//! Training-time augmentation of image batches [N, C, H, W]: random crop after zero padding
//! and random horizontal flip, each drawn per sample from (seed, step, row), so a run is
//! reproducible and a resumed run draws what the uninterrupted one would have.

use crate::dataset::SplitMix64;

/// What to apply; the default applies nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Augment {
    /// Pad every side by this many zero pixels, then crop back to the original size at a
    /// random offset (0: off).
    pub crop_padding: usize,
    /// Mirror left-right with probability 1/2.
    pub horizontal_flip: bool,
}

impl Augment {
    /// Whether it applies nothing.
    pub fn is_off(&self) -> bool {
        self.crop_padding == 0 && !self.horizontal_flip
    }

    /// Augments `samples` (rows of `shape` = [C, H, W]) in place.
    pub fn apply(&self, samples: &mut [f32], shape: &[usize], seed: u64, step: u64) {
        let [channels, height, width] = shape[..] else { return };
        if self.is_off() {
            return;
        }
        let len = channels * height * width;
        let p = self.crop_padding as i64;
        for (row, sample) in samples.chunks_mut(len).enumerate() {
            let mut r = SplitMix64(
                seed ^ step.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ (row as u64).wrapping_mul(0xD1B5_4A32_D192_ED03),
            );
            let (dy, dx) = if p > 0 {
                ((r.next_u64() % (2 * p as u64 + 1)) as i64 - p, (r.next_u64() % (2 * p as u64 + 1)) as i64 - p)
            } else {
                (0, 0)
            };
            let flip = self.horizontal_flip && r.next_u64() & 1 == 1;
            let original = sample.to_vec();
            for c in 0..channels {
                for y in 0..height {
                    for x in 0..width {
                        // Output (y, x) reads input (y + dy, x' + dx), x' mirrored when flipping;
                        // outside the image is the zero padding.
                        let xs = if flip { width - 1 - x } else { x } as i64 + dx;
                        let ys = y as i64 + dy;
                        let inside = (0..height as i64).contains(&ys) && (0..width as i64).contains(&xs);
                        sample[(c * height + y) * width + x] =
                            if inside { original[(c * height + ys as usize) * width + xs as usize] } else { 0.0 };
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Augment;

    #[test]
    fn crops_and_flips_move_pixels_and_keep_the_rest() {
        let image: Vec<f32> = (1..=16).map(|v| v as f32).collect(); // [1, 4, 4]
        let mut flipped = image.clone();
        let flip = Augment { crop_padding: 0, horizontal_flip: true };
        // Over many draws both outcomes occur, and a flip reverses every row.
        let mut seen_flip = false;
        for step in 0..20 {
            flipped.copy_from_slice(&image);
            flip.apply(&mut flipped, &[1, 4, 4], 1, step);
            if flipped != image {
                seen_flip = true;
                assert_eq!(&flipped[..4], &[4.0, 3.0, 2.0, 1.0]);
            }
        }
        assert!(seen_flip);
        let crop = Augment { crop_padding: 1, horizontal_flip: false };
        let mut moved = 0;
        for step in 0..20 {
            let mut x = image.clone();
            crop.apply(&mut x, &[1, 4, 4], 1, step);
            let kept = x.iter().filter(|&&v| v != 0.0).count();
            assert!(kept >= 9, "a crop of at most 1 pixel keeps a 3x3 core");
            moved += (x != image) as usize;
            let mut again = image.clone();
            crop.apply(&mut again, &[1, 4, 4], 1, step);
            assert_eq!(x, again, "the same seed and step give the same crop");
        }
        assert!(moved > 10);
    }
}
