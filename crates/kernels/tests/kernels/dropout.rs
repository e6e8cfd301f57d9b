use crate::common::*;
use kernels::dropout::dropout;
use kernels::{Dropout, cpu};

#[test]
fn philox_matches_the_random123_known_answers() {
    use cpu::dropout::philox4x32_10;
    assert_eq!(philox4x32_10([0; 4], [0; 2]), [0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8]);
    assert_eq!(philox4x32_10([u32::MAX; 4], [u32::MAX; 2]), [0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd]);
    assert_eq!(
        philox4x32_10([0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344], [0xa4093822, 0x299f31d0]),
        [0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1]
    );
}

gpu_test!(dropout_mask_is_identical_on_gpu_and_cpu, |gpu| {
    let mut rng = Rng::new(70);
    for n in ODD_SIZES.into_iter().chain([100_003]) {
        for (p, seed, stream) in [(0.0, 1, 0), (0.3, 42, 7), (0.5, u64::MAX, 1 << 40), (1.0, 3, 3)] {
            let d = Dropout { n, p, seed, stream };
            let x = rng.vec(n, 0.5, 1.5); // never 0, so a zero output means dropped
            let mut want = vec![0.0; n];
            cpu::dropout(&d, &x, &mut want);
            let (xg, yg) = (upload(gpu, &x), poisoned(gpu, n));
            run(gpu, &[&dropout(gpu, &d, &xg, &yg).unwrap()]);
            let got = read(gpu, &yg);
            for i in 0..n {
                assert_eq!(got[i] == 0.0, want[i] == 0.0, "mask differs at {i} for {d:?}");
            }
            assert_close(&format!("{d:?}"), &got, &want);
        }
    }
});

#[test]
fn dropout_keeps_the_expected_fraction_and_streams_differ() {
    let n = 200_000;
    let d = Dropout { n, p: 0.3, seed: 5, stream: 0 };
    let kept = (0..n).filter(|&i| cpu::dropout::keeps(&d, i)).count() as f64 / n as f64;
    // Binomial standard deviation sqrt(0.21 / n) ~ 0.001: five of them.
    assert!((kept - 0.7).abs() < 0.005, "kept {kept}");
    let other = Dropout { stream: 1, ..d };
    let same =
        (0..n).filter(|&i| cpu::dropout::keeps(&d, i) == cpu::dropout::keeps(&other, i)).count() as f64 / n as f64;
    // Independent masks agree with probability 0.7^2 + 0.3^2 = 0.58.
    assert!((same - 0.58).abs() < 0.01, "agreement {same}");
}
