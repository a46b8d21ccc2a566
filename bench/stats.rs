//! Medians with their range, and the number formats of the report.

/// Repeated measurements of one figure.
#[derive(Clone, Debug, Default)]
pub struct Samples(Vec<f64>);

impl Samples {
    pub fn new() -> Self {
        Samples(Vec::new())
    }

    pub fn push(&mut self, x: f64) {
        self.0.push(x);
    }

    /// In the order pushed.
    pub fn values(&self) -> &[f64] {
        &self.0
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    fn sorted(&self) -> Vec<f64> {
        let mut v = self.0.clone();
        v.sort_by(f64::total_cmp);
        v
    }

    /// The median (mean of the two middle values for an even count).
    pub fn median(&self) -> f64 {
        let v = self.sorted();
        match v.len() {
            0 => f64::NAN,
            n if n % 2 == 1 => v[n / 2],
            n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
        }
    }

    pub fn min(&self) -> f64 {
        self.sorted().first().copied().unwrap_or(f64::NAN)
    }

    pub fn max(&self) -> f64 {
        self.sorted().last().copied().unwrap_or(f64::NAN)
    }

    /// `median (min–max)`, each number formatted by `f`.
    pub fn show(&self, f: impl Fn(f64) -> String) -> String {
        if self.len() == 1 {
            return f(self.median());
        }
        format!("{} ({}–{})", f(self.median()), f(self.min()), f(self.max()))
    }
}

/// `1234567.8` -> `1,234,568`.
pub fn thousands(x: f64) -> String {
    if !x.is_finite() {
        return "n/a".into();
    }
    let n = x.round() as i64;
    let digits = n.unsigned_abs().to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    if n < 0 {
        out.insert(0, '-');
    }
    out
}

/// A ratio with three decimals.
pub fn ratio(x: f64) -> String {
    format!("{x:.3}")
}

/// A relative change in percent with a sign: `+1.23 %`.
pub fn percent(x: f64) -> String {
    format!("{:+.2} %", x * 100.0)
}

/// Milliseconds with two decimals.
pub fn millis(x: f64) -> String {
    format!("{x:.2} ms")
}
