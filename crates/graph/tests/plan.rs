//! Buffer planning: which tensors share a buffer, and how close the plan comes to the least
//! memory a run can take.

use graph::{CellKind, Graph, Plan, Supervised, Training, TrainingStep};
use kernels::Unary;

#[test]
fn a_chain_of_ops_plans_two_buffers_and_keeps_outputs_apart() {
    let mut g = Graph::new();
    let x = g.input("x", &[100]);
    let mut h = x;
    let mut middle = x;
    for i in 0..10 {
        h = g.unary(Unary::Tanh, h).unwrap();
        if i == 4 {
            middle = h;
        }
    }
    let plan = Plan::new(&g, &[h]);
    assert_eq!(plan.buffers, vec![100, 100], "ping-pong between two buffers");
    assert_eq!(plan.unshared_elements, 1000);
    // Reading a middle node too keeps its buffer out of later reuse.
    let plan = Plan::new(&g, &[h, middle]);
    let kept = plan.buffer[&middle];
    let later: Vec<usize> = plan.order.iter().skip(6).filter_map(|id| plan.buffer.get(&id.out(0)).copied()).collect();
    assert!(!later.contains(&kept), "{later:?} reuse {kept}");
    assert_eq!(plan.buffers.len(), 3);
    // Ten tanh nodes each read 100 elements and write 100: 8,000 bytes.
    assert_eq!(plan.bytes_moved(&g), 10 * 2 * 100 * 4);
}

#[test]
fn a_view_moves_no_bytes_and_a_product_moves_its_operands_and_result() {
    let mut g = Graph::new();
    let x = g.input("x", &[6, 5]);
    let w = g.param("w", &[3, 5]);
    let y = g.matmul(x, w, false, true).unwrap();
    let flat = g.reshape(y, &[18]).unwrap();
    assert_eq!(Plan::new(&g, &[flat]).bytes_moved(&g), (30 + 15 + 18) * 4);
}

/// Every shipped model's training step is planned within a fifth of the most its tensors
/// hold at one time (the CNN's 26.1 MiB against 22.4; first come, first served planned 40.7).
#[test]
fn training_steps_are_planned_close_to_their_peak() {
    let models = [
        ("cnn", graph::zoo::mnist_cnn(0, 64)),
        ("lstm", graph::zoo::mnist_rnn(CellKind::Lstm, 0, 64)),
        ("gru", graph::zoo::mnist_rnn(CellKind::Gru, 0, 64)),
        ("vit", graph::zoo::mnist_vit(0, 64)),
        ("char-lstm", graph::zoo::char_lstm(0, 32, 128, 78)),
        ("gpt-char", graph::zoo::char_gpt(0, 32, 128, 78)),
    ];
    for (name, built) in models {
        let built = built.unwrap();
        let model = Supervised::classifier(built.model, built.input, built.logits, 0.0).unwrap();
        let step = TrainingStep::new(&model, &Training::adam(1e-3)).unwrap();
        let plan = Plan::new(&step.graph, &step.outputs);
        let (planned, peak) = (plan.planned_elements(), plan.peak_elements);
        println!("{name}: planned {planned} elements, peak {peak}, unshared {}", plan.unshared_elements);
        assert!(planned >= peak, "{name}: {planned} below the peak {peak}");
        assert!(planned * 5 <= peak * 6, "{name}: {planned} elements planned for a peak of {peak}");
        if name == "cnn" {
            let mib = |elements: usize| format!("{:.1}", elements as f64 * 4.0 / (1 << 20) as f64);
            assert_eq!((mib(planned), mib(peak)), ("26.1".into(), "22.4".into()));
        }
    }
}
