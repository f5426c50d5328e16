//! RWKV's recurrent step as an ONNX graph: the same arithmetic as [`super::wkv::step`] and the
//! blocks of [`super::Rwkv::forward`], written node by node.

use tch::Tensor;

use super::Rwkv;
use super::wkv::EMPTY_P;

impl Rwkv {
    /// The recurrent step as an ONNX graph. State per block `l`, each [batch, C]:
    /// `block{l}.att_x` / `block{l}.ffn_x` (the last inputs of the two token shifts) and the WKV
    /// state `block{l}.att_a`, `att_b`, `att_p` (numerator and denominator scaled by `e^{-p}`,
    /// `p` the running maximum exponent, as in [`wkv::step`](super::wkv::step)).
    pub fn onnx_step(&self, graph: &mut crate::onnx::StepGraph) -> String {
        let c = self.config.embd;
        let input = graph.linear(
            proto::card::FRAME_INPUT,
            &self.input.ws,
            self.input.bs.as_ref(),
            "input",
        );
        let mut x = graph.layer_norm(&input, &self.ln0, "ln0");
        for (layer, block) in self.blocks.iter().enumerate() {
            let name = |s: &str| format!("block{layer}.{s}");
            let state = |graph: &mut crate::onnx::StepGraph, s: &str, initial: f32, doc: &str| {
                graph.state_input(&name(s), c, initial, doc)
            };
            let att_x = state(
                graph,
                "att_x",
                0.0,
                "last input of the time-mix token shift",
            );
            let att_a = state(graph, "att_a", 0.0, "WKV numerator, scaled by exp(-att_p)");
            let att_b = state(
                graph,
                "att_b",
                0.0,
                "WKV denominator, scaled by exp(-att_p)",
            );
            let att_p = state(
                graph,
                "att_p",
                EMPTY_P as f32,
                "WKV running maximum exponent (-1e38: no past yet)",
            );
            let ffn_x = state(
                graph,
                "ffn_x",
                0.0,
                "last input of the channel-mix token shift",
            );

            // x·mix + previous·(1 − mix), with (1 − mix) stored as a constant.
            let mix =
                |graph: &mut crate::onnx::StepGraph, x: &str, prev: &str, m: &Tensor, n: &str| {
                    let mix = graph.constant(&name(&format!("{n}.mix")), m);
                    let rest = graph.constant(&name(&format!("{n}.one_minus_mix")), &(1.0 - m));
                    let now = graph.node("Mul", &[x, &mix], &name(&format!("{n}.now")), &[]);
                    let before =
                        graph.node("Mul", &[prev, &rest], &name(&format!("{n}.before")), &[]);
                    graph.node("Add", &[&now, &before], &name(&format!("{n}.mixed")), &[])
                };
            let op = |graph: &mut crate::onnx::StepGraph, op: &str, inputs: &[&str], n: &str| {
                graph.node(op, inputs, &name(n), &[])
            };

            let att = &block.att;
            let xa = graph.layer_norm(&x, &block.ln1, &name("ln1"));
            let xk = mix(graph, &xa, &att_x, &att.mix_k, "att.key_in");
            let xv = mix(graph, &xa, &att_x, &att.mix_v, "att.value_in");
            let xr = mix(graph, &xa, &att_x, &att.mix_r, "att.receptance_in");
            let k = graph.linear(&xk, &att.key.ws, None, &name("att.key"));
            let v = graph.linear(&xv, &att.value.ws, None, &name("att.value"));
            let r_lin = graph.linear(
                &xr,
                &att.receptance.ws,
                None,
                &name("att.receptance_linear"),
            );
            let r = op(graph, "Sigmoid", &[&r_lin], "att.receptance");

            // WKV output: the past (a, b at exponent p) and the current token at u + k.
            let u = graph.constant(&name("att.time_first"), &att.time_first);
            let w = graph.constant(&name("att.decay"), &att.time_decay.exp());
            let now = op(graph, "Add", &[&u, &k], "att.wkv.now_exponent");
            let p = op(graph, "Max", &[&att_p, &now], "att.wkv.max_exponent");
            let d1 = op(graph, "Sub", &[&att_p, &p], "att.wkv.past_shift");
            let e1 = op(graph, "Exp", &[&d1], "att.wkv.past_weight");
            let d2 = op(graph, "Sub", &[&now, &p], "att.wkv.now_shift");
            let e2 = op(graph, "Exp", &[&d2], "att.wkv.now_weight");
            let past_a = op(graph, "Mul", &[&e1, &att_a], "att.wkv.past_numerator");
            let now_a = op(graph, "Mul", &[&e2, &v], "att.wkv.now_numerator");
            let num = op(graph, "Add", &[&past_a, &now_a], "att.wkv.numerator");
            let past_b = op(graph, "Mul", &[&e1, &att_b], "att.wkv.past_denominator");
            let den = op(graph, "Add", &[&past_b, &e2], "att.wkv.denominator");
            let wkv = op(graph, "Div", &[&num, &den], "att.wkv");
            // Next state: the past decays by w, the current token joins at exponent k.
            let decayed = op(graph, "Sub", &[&att_p, &w], "att.wkv.decayed_exponent");
            let p_next = op(graph, "Max", &[&decayed, &k], "att.wkv.next_max_exponent");
            let d1 = op(
                graph,
                "Sub",
                &[&decayed, &p_next],
                "att.wkv.next_past_shift",
            );
            let e1 = op(graph, "Exp", &[&d1], "att.wkv.next_past_weight");
            let d2 = op(graph, "Sub", &[&k, &p_next], "att.wkv.next_now_shift");
            let e2 = op(graph, "Exp", &[&d2], "att.wkv.next_now_weight");
            let past_a = op(graph, "Mul", &[&e1, &att_a], "att.wkv.next_past_numerator");
            let now_a = op(graph, "Mul", &[&e2, &v], "att.wkv.next_now_numerator");
            let a_next = op(graph, "Add", &[&past_a, &now_a], "att.wkv.next_numerator");
            let past_b = op(
                graph,
                "Mul",
                &[&e1, &att_b],
                "att.wkv.next_past_denominator",
            );
            let b_next = op(graph, "Add", &[&past_b, &e2], "att.wkv.next_denominator");

            let gated = op(graph, "Mul", &[&r, &wkv], "att.gated");
            let att_out = graph.linear(&gated, &att.output.ws, None, &name("att.output"));
            x = op(graph, "Add", &[&x, &att_out], "after_att");

            let ffn = &block.ffn;
            let xf = graph.layer_norm(&x, &block.ln2, &name("ln2"));
            let xk = mix(graph, &xf, &ffn_x, &ffn.mix_k, "ffn.key_in");
            let xr = mix(graph, &xf, &ffn_x, &ffn.mix_r, "ffn.receptance_in");
            let key = graph.linear(&xk, &ffn.key.ws, None, &name("ffn.key"));
            let relu = op(graph, "Relu", &[&key], "ffn.key_relu");
            let squared = op(graph, "Mul", &[&relu, &relu], "ffn.key_relu_squared");
            let value = graph.linear(&squared, &ffn.value.ws, None, &name("ffn.value"));
            let r_lin = graph.linear(
                &xr,
                &ffn.receptance.ws,
                None,
                &name("ffn.receptance_linear"),
            );
            let r = op(graph, "Sigmoid", &[&r_lin], "ffn.receptance");
            let ffn_out = op(graph, "Mul", &[&r, &value], "ffn.gated");
            x = op(graph, "Add", &[&x, &ffn_out], "after_ffn");

            graph.state_output(&att_x, &xa);
            graph.state_output(&att_a, &a_next);
            graph.state_output(&att_b, &b_next);
            graph.state_output(&att_p, &p_next);
            graph.state_output(&ffn_x, &xf);
        }
        let out = graph.layer_norm(&x, &self.ln_out, "ln_out");
        graph.linear(&out, &self.head.ws, self.head.bs.as_ref(), "head")
    }
}
