use crate::common::*;
use kernels::embedding::{embedding, embedding_backward};
use kernels::{Embedding, cpu};

gpu_test!(embedding_forward_and_backward_match_reference, |gpu| {
    let mut rng = Rng::new(80);
    let cases = [
        Embedding { tokens: 1, vocab: 1, dim: 1 },
        Embedding { tokens: 7, vocab: 3, dim: 5 },
        Embedding { tokens: 257, vocab: 65, dim: 33 },
        Embedding { tokens: 1000, vocab: 1000, dim: 16 },
        Embedding { tokens: 300, vocab: 50, dim: 7 },
    ];
    for (case, e) in cases.into_iter().enumerate() {
        // Case 4: every token the same (one long run, as a padding token makes).
        let ids: Vec<u32> = (0..e.tokens).map(|_| if case == 4 { 17 } else { rng.below(e.vocab) as u32 }).collect();
        let w = rng.vec(e.vocab * e.dim, -1.0, 1.0);
        let dy = rng.vec(e.tokens * e.dim, -1.0, 1.0);
        let (mut out, mut dw) = (vec![0.0; e.tokens * e.dim], vec![0.0; e.vocab * e.dim]);
        cpu::embedding(&e, &ids, &w, &mut out);
        cpu::embedding_backward(&e, &ids, &dy, &mut dw);
        let (idg, wg, dyg) = (gpu.upload(&ids).unwrap(), upload(gpu, &w), upload(gpu, &dy));
        let (outg, dwg) = (poisoned(gpu, e.tokens * e.dim), poisoned(gpu, e.vocab * e.dim));
        let (keys, pos) = (poisoned(gpu, e.sort_len()), poisoned(gpu, e.sort_len()));
        let mut all = vec![embedding(gpu, &e, &idg, &wg, &outg).unwrap()];
        all.extend(embedding_backward(gpu, &e, &idg, &dyg, &keys, &pos, &dwg).unwrap());
        let all: Vec<_> = all.iter().collect();
        run(gpu, &all);
        assert_close(&format!("embedding {e:?}"), &read(gpu, &outg), &out);
        let first = read(gpu, &dwg);
        assert_close(&format!("embedding' {e:?}"), &first, &dw);
        // Deterministic: the same sums in the same order, bit for bit.
        run(gpu, &all);
        assert_eq!(
            read(gpu, &dwg).iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            first.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
        );
    }
});
