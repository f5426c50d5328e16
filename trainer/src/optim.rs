//! The optimiser: AdamW, with an optional exponential moving average of the weights.

use std::path::Path;

use anyhow::{Context, Result};
use tch::nn::VarStore;
use tch::{Kind, Tensor};

use crate::config::TrainConfig;

/// Adam with decoupled weight decay (AdamW) on matrices; vectors (biases, norms, RWKV's time
/// parameters) are not decayed. Written out rather than taken from tch so that its moments can
/// be checkpointed and a resumed run continues exactly.
///
/// With `ema_decay` it also keeps an exponential moving average of the weights (Polyak
/// averaging), checkpointed with the moments; [`AdamW::with_average`] swaps it in.
pub struct AdamW {
    params: Vec<(String, Tensor)>,
    m: Vec<Tensor>,
    v: Vec<Tensor>,
    /// The averaged weights, one per parameter, when averaging is on.
    average: Option<(f64, Vec<Tensor>)>,
    pub step: i64,
    beta1: f64,
    beta2: f64,
    weight_decay: f64,
}

impl AdamW {
    const EPS: f64 = 1e-8;

    pub fn new(vs: &VarStore, config: &TrainConfig) -> AdamW {
        let mut params: Vec<(String, Tensor)> = vs
            .variables()
            .into_iter()
            .filter(|(_, t)| t.requires_grad())
            .collect();
        params.sort_by(|a, b| a.0.cmp(&b.0));
        let zeros = |p: &(String, Tensor)| p.1.zeros_like();
        let average = config.ema_decay.map(|decay| {
            let copies = params.iter().map(|(_, p)| p.detach().copy()).collect();
            (decay, copies)
        });
        AdamW {
            m: params.iter().map(zeros).collect(),
            v: params.iter().map(zeros).collect(),
            average,
            params,
            step: 0,
            beta1: config.beta1,
            beta2: config.beta2,
            weight_decay: config.weight_decay,
        }
    }

    pub fn zero_grad(&mut self) {
        for (_, p) in &mut self.params {
            let mut grad = p.grad();
            if grad.defined() {
                let _ = grad.zero_();
            }
        }
    }

    /// Scale gradients so their global L2 norm is at most `max`; returns the norm before.
    pub fn clip_grad_norm(&mut self, max: f64) -> f64 {
        let norms: Vec<Tensor> = self
            .params
            .iter()
            .map(|(_, p)| p.grad())
            .filter(|g| g.defined())
            .map(|g| g.square().sum(Kind::Float))
            .collect();
        if norms.is_empty() {
            return 0.0;
        }
        let norm = Tensor::stack(&norms, 0)
            .sum(Kind::Float)
            .sqrt()
            .double_value(&[]);
        if norm > max {
            tch::no_grad(|| {
                for (_, p) in &self.params {
                    let mut g = p.grad();
                    if g.defined() {
                        let _ = g.g_mul_scalar_(max / (norm + 1e-6));
                    }
                }
            });
        }
        norm
    }

    pub fn step(&mut self, lr: f64) {
        self.step += 1;
        let (b1, b2) = (self.beta1, self.beta2);
        let correction1 = 1.0 - b1.powi(self.step as i32);
        let correction2 = 1.0 - b2.powi(self.step as i32);
        tch::no_grad(|| {
            for (((_, p), m), v) in self.params.iter_mut().zip(&mut self.m).zip(&mut self.v) {
                let g = p.grad();
                if !g.defined() {
                    continue;
                }
                *m = &*m * b1 + &g * (1.0 - b1);
                *v = &*v * b2 + g.square() * (1.0 - b2);
                if p.dim() >= 2 && self.weight_decay > 0.0 {
                    let _ = p.g_mul_scalar_(1.0 - lr * self.weight_decay);
                }
                let update = (&*m / correction1) / ((&*v / correction2).sqrt() + Self::EPS);
                let _ = p.g_sub_(&(update * lr));
            }
            if let Some((decay, average)) = &mut self.average {
                for ((_, p), a) in self.params.iter().zip(average) {
                    // a ← decay·a + (1 − decay)·p
                    let _ = a.lerp_(p, 1.0 - *decay);
                }
            }
        });
    }

    /// Run `f` with the averaged weights in the model (the raw ones are put back after);
    /// without averaging, just run `f`.
    pub fn with_average<R>(&mut self, f: impl FnOnce() -> R) -> R {
        let Some((_, average)) = &self.average else {
            return f();
        };
        let raw: Vec<Tensor> = tch::no_grad(|| {
            self.params
                .iter_mut()
                .zip(average)
                .map(|((_, p), a)| {
                    let raw = p.detach().copy();
                    p.copy_(a);
                    raw
                })
                .collect()
        });
        let result = f();
        tch::no_grad(|| {
            for ((_, p), raw) in self.params.iter_mut().zip(&raw) {
                p.copy_(raw);
            }
        });
        result
    }

    /// Write the moments and step count (and the average) to `path` as safetensors, for
    /// `last.optim.safetensors`. Not atomic by itself: the run folder's writes make it so
    /// ([`crate::run::RunFolder::stage`]).
    pub fn write(&self, path: &Path) -> Result<()> {
        let mut named: Vec<(String, Tensor)> = Vec::new();
        for (((name, _), m), v) in self.params.iter().zip(&self.m).zip(&self.v) {
            named.push((format!("m.{name}"), m.shallow_clone()));
            named.push((format!("v.{name}"), v.shallow_clone()));
        }
        if let Some((_, average)) = &self.average {
            for ((name, _), a) in self.params.iter().zip(average) {
                named.push((format!("average.{name}"), a.shallow_clone()));
            }
        }
        named.push(("step".into(), Tensor::from(self.step)));
        Tensor::write_safetensors(&named, path)
            .with_context(|| format!("writing {}", path.display()))
    }

    pub fn load(&mut self, path: &Path) -> Result<()> {
        let stored: std::collections::HashMap<String, Tensor> =
            Tensor::read_safetensors(path)?.into_iter().collect();
        let get = |key: &str| {
            stored
                .get(key)
                .with_context(|| format!("{}: no tensor {key}", path.display()))
        };
        for (((name, p), m), v) in self.params.iter().zip(&mut self.m).zip(&mut self.v) {
            *m = get(&format!("m.{name}"))?.to_device(p.device());
            *v = get(&format!("v.{name}"))?.to_device(p.device());
        }
        if let Some((_, average)) = &mut self.average {
            for ((name, p), a) in self.params.iter().zip(average) {
                *a = get(&format!("average.{name}"))?.to_device(p.device());
            }
        }
        self.step = get("step")?.int64_value(&[]);
        Ok(())
    }
}
