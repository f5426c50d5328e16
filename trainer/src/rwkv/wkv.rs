//! The WKV operator of RWKV-4 in four forms that compute the same values: the recurrent
//! [`step`], and three parallel forms over a sequence: [`scan`] (the default), [`chunk`] and a
//! loop of steps (in `Rwkv::forward`). `w` = exp(time_decay) > 0 per channel, `u` = time_first.

use tch::{Kind, Tensor};

/// Large negative stand-in for −∞ in masked exponents (finite, so no ∞ − ∞ = NaN).
const MASKED: f64 = -1e30;
/// Initial `p` of the WKV state: no past yet.
pub(crate) const EMPTY_P: f64 = -1e38;

/// The WKV state of one layer: past numerator `a`, denominator `b`, both scaled by `e^{-p}`.
pub struct WkvState {
    pub a: Tensor,
    pub b: Tensor,
    pub p: Tensor,
}

/// One recurrent WKV step (all [B, C]); `w` = exp(time_decay), `u` = time_first.
pub fn step(w: &Tensor, u: &Tensor, k: &Tensor, v: &Tensor, s: &WkvState) -> (Tensor, WkvState) {
    let ww = u + k;
    let p = s.p.maximum(&ww);
    let e1 = (&s.p - &p).exp();
    let e2 = (&ww - &p).exp();
    let wkv = (&e1 * &s.a + &e2 * v) / (&e1 * &s.b + &e2);
    let ww = &s.p - w;
    let p = ww.maximum(k);
    let e1 = (&ww - &p).exp();
    let e2 = (k - &p).exp();
    let next = WkvState {
        a: &e1 * &s.a + &e2 * v,
        b: &e1 * &s.b + &e2,
        p,
    };
    (wkv, next)
}

/// WKV over a chunk `k`, `v` [B, L, C] starting from `s`: outputs [B, L, C] and the state after
/// the chunk. Every output is a softmax-weighted mean over the chunk's positions and the state.
pub fn chunk(w: &Tensor, u: &Tensor, k: &Tensor, v: &Tensor, s: &WkvState) -> (Tensor, WkvState) {
    let (_, len, _) = k.size3().expect("[B, L, C]");
    let device = k.device();
    let k = k.transpose(1, 2); // [B, C, L]
    let v = v.transpose(1, 2);
    let steps = Tensor::arange(len, (Kind::Float, device));
    // distance[t, i] = t − 1 − i: how often token i has decayed when token t reads it.
    let distance = steps.unsqueeze(1) - steps.unsqueeze(0) - 1.0;
    let w3 = w.view([-1, 1, 1]); // [C, 1, 1]
    let past = k.unsqueeze(2) - &w3 * &distance; // [B, C, L(t), L(i)]
    let diagonal = (u.view([-1, 1]) + &k).diag_embed(0, -2, -1);
    let is_past = distance.ge(0.0); // i < t
    let is_now = Tensor::eye(len, (Kind::Bool, device));
    let logits = past
        .where_self(&is_past, &Tensor::from(MASKED as f32).to_device(device))
        .where_self(&is_now.logical_not(), &diagonal);
    // The carried state is one more position, decayed t times by step t.
    let state_logit = s.p.unsqueeze(2) - w.view([-1, 1]) * &steps; // [B, C, L]
    let max = logits.amax([-1].as_slice(), false).maximum(&state_logit);
    let weights = (logits - max.unsqueeze(3)).exp();
    let state_weight = (state_logit - &max).exp();
    let numerator =
        weights.matmul(&v.unsqueeze(3)).squeeze_dim(3) + &state_weight * s.a.unsqueeze(2);
    let denominator = weights.sum_dim_intlist([-1].as_slice(), false, Kind::Float)
        + &state_weight * s.b.unsqueeze(2);
    let out = (numerator / denominator).transpose(1, 2);

    // State after the last position: every token i decayed len − 1 − i times, the old state len.
    let end_logit = &k - w.view([-1, 1]) * (len as f64 - 1.0 - &steps); // [B, C, L]
    let old_logit = &s.p - w * len as f64; // [B, C]
    let p = end_logit.amax([-1].as_slice(), false).maximum(&old_logit);
    let token_weight = (end_logit - p.unsqueeze(2)).exp();
    let old_weight = (old_logit - &p).exp();
    let next = WkvState {
        a: &old_weight * &s.a
            + (&token_weight * &v).sum_dim_intlist([-1].as_slice(), false, Kind::Float),
        b: &old_weight * &s.b + token_weight.sum_dim_intlist([-1].as_slice(), false, Kind::Float),
        p,
    };
    (out, next)
}

/// WKV over a whole sequence `k`, `v` [B, T, C] from `s`: outputs [B, T, C] and the state after
/// it.
///
/// Token i reaches step t with exponent k_i − (t−1−i)w = (k_i + i·w) − (t−1)w, so the past
/// that step t reads is a weighted mean of the values with weights e^{k_i + i·w}: the decay
/// only scales the total, e^{−(t−1)w}. The carried state joins as one more entry before the
/// tokens. `logcumsumexp` gives the log of each prefix's total weight, D_j, without overflow,
/// in f64 because i·w grows to 10⁴ and beyond and f32 would lose what remains after
/// subtracting (t−1)w. The prefix means then follow a linear recurrence,
/// m_j = e^{D_{j−1}−D_j}·m_{j−1} + e^{L_j−D_j}·value_j (L_j the entry's own log weight), whose
/// factors lie in [0, 1]; [`linear_scan`] evaluates it in log₂ T vectorised steps. Finally
/// each step mixes its past mean with its own value, weighted e^{D−(t−1)w} against e^{u+k_t}.
pub fn scan(w: &Tensor, u: &Tensor, k: &Tensor, v: &Tensor, s: &WkvState) -> (Tensor, WkvState) {
    let (_, len, _) = k.size3().expect("[B, T, C]");
    let f64 = Kind::Double;
    let w64 = w.to_kind(f64);
    let steps = Tensor::arange(len, (f64, k.device())).unsqueeze(1); // [T, 1]
    // Entry 0 is the state: step t reads it with exponent p − t·w = (p − w) − (t−1)w, and it
    // stands for a total weight b (a zero b, the empty state, has log weight −∞: here −1e38
    // plus a large negative number, finite so that nothing turns into NaN).
    let state_log_weight = s.p.to_kind(f64) - &w64 + s.b.to_kind(f64).clamp_min(1e-300).log();
    let log_weight = Tensor::cat(
        &[
            state_log_weight.unsqueeze(1),
            k.to_kind(f64) + &steps * &w64,
        ],
        1,
    ); // [B, T+1, C]
    let total = log_weight.logcumsumexp(1);
    // Entry 0 has nothing before it to keep.
    let keep = Tensor::cat(
        &[
            total.narrow(1, 0, 1).zeros_like(),
            (total.narrow(1, 0, len) - total.narrow(1, 1, len)).exp(),
        ],
        1,
    )
    .to_kind(Kind::Float);
    let take = (&log_weight - &total).exp().to_kind(Kind::Float);
    let state_value = &s.a / s.b.clamp_min(f32::MIN_POSITIVE as f64);
    let values = Tensor::cat(&[state_value.unsqueeze(1), v.shallow_clone()], 1);
    let means = linear_scan(&keep, &(take * values)); // [B, T+1, C]

    // Step t: the past (entries 0..=t) against the token itself with bonus u.
    let past_log_weight = total.narrow(1, 0, len) - (&steps - 1.0) * &w64;
    let now_log_weight = (u + k).to_kind(f64);
    let past_share = (past_log_weight - now_log_weight)
        .sigmoid()
        .to_kind(Kind::Float);
    let out = &past_share * means.narrow(1, 0, len) + (1.0 - &past_share) * v;

    // The state after the sequence: the mean of all entries, total weight e^p with b = 1.
    let p = total.select(1, len) - &w64 * (len - 1) as f64;
    let next = WkvState {
        a: means.select(1, len),
        b: p.ones_like().to_kind(Kind::Float),
        p: p.to_kind(Kind::Float),
    };
    (out, next)
}

/// x_j = keep_j·x_{j−1} + add_j along dim 1 from x_{−1} = 0, for `keep` in [0, 1]: each round
/// folds in the terms `span` steps back (Hillis–Steele), so ⌈log₂ T⌉ rounds of whole-tensor
/// products replace T dependent steps.
fn linear_scan(keep: &Tensor, add: &Tensor) -> Tensor {
    let len = add.size()[1];
    let later = |x: &Tensor, span: i64| {
        // x shifted `span` steps later in time, zeros first.
        Tensor::cat(
            &[
                x.narrow(1, 0, span).zeros_like(),
                x.narrow(1, 0, len - span),
            ],
            1,
        )
    };
    let (mut keep, mut sum) = (keep.shallow_clone(), add.shallow_clone());
    let mut span = 1;
    while span < len {
        sum = &sum + &keep * later(&sum, span);
        keep = &keep * later(&keep, span);
        span *= 2;
    }
    sum
}
