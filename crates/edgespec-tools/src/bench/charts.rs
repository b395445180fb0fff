//! SVG charts of a benchmark's summaries (plotters' SVG backend, which needs
//! no font files): tok/s per mode with min–max error bars, and the curves
//! the sweeps produce (tok/s and α against γ and K, tok/s against the large
//! model's share for EAD).

use std::path::{Path, PathBuf};

use plotters::prelude::*;

use super::ModeSummary;

/// A named series of (x, y) points.
type Series = (String, Vec<(f64, f64)>);

const SIZE: (u32, u32) = (900, 520);

fn chart_error(e: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::other(e.to_string())
}

/// Bars of median tok/s per mode with min–max error bars.
fn bars(path: &Path, title: &str, modes: &[&ModeSummary]) -> std::io::Result<()> {
    let root = SVGBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(chart_error)?;
    let top = modes.iter().map(|m| m.tok_s.max).fold(0.0, f64::max) * 1.15;
    let n = modes.len();
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(15)
        .x_label_area_size(90)
        .y_label_area_size(60)
        .build_cartesian_2d(-0.5f64..n as f64 - 0.5, 0.0..top.max(1.0))
        .map_err(chart_error)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(n)
        .x_label_formatter(&|x| {
            let i = x.round();
            if (x - i).abs() < 1e-6 && i >= 0.0 && (i as usize) < n {
                modes[i as usize].mode.clone()
            } else {
                String::new()
            }
        })
        .x_label_style(
            ("sans-serif", 12)
                .into_font()
                .transform(FontTransform::Rotate90),
        )
        .y_desc("decode tok/s")
        .draw()
        .map_err(chart_error)?;
    chart
        .draw_series(modes.iter().enumerate().map(|(i, m)| {
            let x = i as f64;
            let color = if m.mode.starts_with("llama") {
                RED.mix(0.6)
            } else if m.mode == "target" {
                BLACK.mix(0.5)
            } else {
                BLUE.mix(0.6)
            };
            Rectangle::new(
                [(x - 0.35, 0.0), (x + 0.35, m.tok_s.median)],
                color.filled(),
            )
        }))
        .map_err(chart_error)?;
    chart
        .draw_series(modes.iter().enumerate().map(|(i, m)| {
            ErrorBar::new_vertical(
                i as f64,
                m.tok_s.min,
                m.tok_s.median,
                m.tok_s.max,
                BLACK.filled(),
                10,
            )
        }))
        .map_err(chart_error)?;
    root.present().map_err(chart_error)
}

/// Lines with points, one per series.
fn lines(
    path: &Path,
    title: &str,
    x_desc: &str,
    y_desc: &str,
    series: &[Series],
) -> std::io::Result<()> {
    let points = series.iter().flat_map(|s| s.1.iter());
    let (mut x0, mut x1, mut y1) = (f64::INFINITY, f64::NEG_INFINITY, 0.0f64);
    for &(x, y) in points {
        x0 = x0.min(x);
        x1 = x1.max(x);
        y1 = y1.max(y);
    }
    let pad = ((x1 - x0) * 0.05).max(0.5);
    let root = SVGBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(chart_error)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(60)
        .build_cartesian_2d(x0 - pad..x1 + pad, 0.0..(y1 * 1.15).max(1e-6))
        .map_err(chart_error)?;
    chart
        .configure_mesh()
        .x_desc(x_desc)
        .y_desc(y_desc)
        .draw()
        .map_err(chart_error)?;
    for (i, (name, pts)) in series.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        chart
            .draw_series(LineSeries::new(pts.iter().copied(), color.stroke_width(2)))
            .map_err(chart_error)?
            .label(name.as_str())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
        chart
            .draw_series(pts.iter().map(|&p| Circle::new(p, 4, color.filled())))
            .map_err(chart_error)?;
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(chart_error)?;
    root.present().map_err(chart_error)
}

/// Splits a mode name `family:arg` and parses arg as a number.
fn numeric_arg(mode: &str) -> Option<(&str, f64)> {
    let (family, arg) = mode.split_once(':')?;
    Some((family, arg.parse().ok()?))
}

/// Groups summaries into series by `key` (series name, x) with y from `value`,
/// x ascending; series with fewer than two points are dropped.
fn curves(
    modes: &[&ModeSummary],
    key: impl Fn(&ModeSummary) -> Option<(String, f64)>,
    value: impl Fn(&ModeSummary) -> Option<f64>,
) -> Vec<Series> {
    let mut series: Vec<Series> = Vec::new();
    for m in modes {
        let (Some((name, x)), Some(y)) = (key(m), value(m)) else {
            continue;
        };
        match series.iter_mut().find(|s| s.0 == name) {
            Some(s) => s.1.push((x, y)),
            None => series.push((name, vec![(x, y)])),
        }
    }
    for s in &mut series {
        s.1.sort_by(|a, b| a.0.total_cmp(&b.0));
    }
    series.retain(|s| s.1.len() >= 2);
    series
}

/// Writes every chart the summaries support into `dir`; returns their paths.
pub fn write_charts(summaries: &[ModeSummary], dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut sets: Vec<&str> = Vec::new();
    for s in summaries {
        if !sets.contains(&s.set.as_str()) {
            sets.push(&s.set);
        }
    }
    let mut written = Vec::new();
    for set in sets {
        let all: Vec<&ModeSummary> = summaries.iter().filter(|s| s.set == set).collect();
        // The per-mode charts show the largest thread count; a threads
        // sweep gets a chart of its own.
        let most_threads = all.iter().map(|m| m.threads).max().unwrap_or(0);
        let modes: Vec<&ModeSummary> = all
            .iter()
            .copied()
            .filter(|m| m.threads == most_threads)
            .collect();
        let file = |name: &str| dir.join(format!("{name}-{set}.svg"));
        let path = file("tok_s");
        bars(&path, &format!("decode tok/s per mode ({set})"), &modes)?;
        written.push(path);

        // γ: fixed-length speculative modes, a series per drafter kind.
        let by_gamma = |m: &ModeSummary| {
            let (family, g) = numeric_arg(&m.mode)?;
            (!family.starts_with("ead")).then(|| (family.to_owned(), g))
        };
        // K: trimmed@K:γ, a series per γ.
        let by_k = |m: &ModeSummary| {
            let rest = m.mode.strip_prefix("trimmed@")?;
            let (k, g) = rest.split_once(':')?;
            Some((format!("trimmed γ={g}"), k.parse().ok()?))
        };
        let tok_s = |m: &ModeSummary| Some(m.tok_s.median);
        let alpha = |m: &ModeSummary| m.alpha;
        let by_threads = |m: &ModeSummary| Some((m.mode.clone(), f64::from(m.threads)));
        let plots: [(&str, String, &str, &str, Vec<Series>); 6] = [
            (
                "threads-tok_s",
                format!("tok/s vs threads ({set})"),
                "threads",
                "decode tok/s",
                curves(&all, by_threads, tok_s),
            ),
            (
                "gamma-tok_s",
                format!("tok/s vs draft length γ ({set})"),
                "γ",
                "decode tok/s",
                curves(&modes, by_gamma, tok_s),
            ),
            (
                "gamma-alpha",
                format!("acceptance vs draft length γ ({set})"),
                "γ",
                "α",
                curves(&modes, by_gamma, alpha),
            ),
            (
                "k-tok_s",
                format!("tok/s vs kept vocabulary K ({set})"),
                "K",
                "decode tok/s",
                curves(&modes, by_k, tok_s),
            ),
            (
                "k-alpha",
                format!("acceptance vs kept vocabulary K ({set})"),
                "K",
                "α",
                curves(&modes, by_k, alpha),
            ),
            (
                "ead",
                format!("EAD: tok/s vs large-model share of tokens ({set})"),
                "large-model share of tokens",
                "decode tok/s",
                curves(
                    &modes,
                    |m| {
                        let (family, _) = numeric_arg(&m.mode)?;
                        family.starts_with("ead").then(|| (family.to_owned(), 0.0))
                    },
                    tok_s,
                )
                .into_iter()
                .map(|(name, _)| {
                    let pts = modes
                        .iter()
                        .filter(|m| m.mode.starts_with(&format!("{name}:")))
                        .filter_map(|m| Some((m.large_share?, m.tok_s.median)))
                        .collect();
                    (name, pts)
                })
                .collect(),
            ),
        ];
        for (name, title, x, y, series) in plots {
            if series.is_empty() {
                continue;
            }
            let path = file(name);
            lines(&path, &title, x, y, &series)?;
            written.push(path);
        }
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::Spread;

    fn summary(mode: &str, tok_s: f64, alpha: Option<f64>) -> ModeSummary {
        ModeSummary {
            set: "code".into(),
            mode: mode.into(),
            threads: 2,
            tok_s: Spread::of(&[tok_s * 0.9, tok_s, tok_s * 1.1]).unwrap(),
            speedup: None,
            alpha,
            tau: None,
            c_time: None,
            c_bytes: None,
            mbsu: None,
            ttft_ms: None,
            request_s: None,
            identical: None,
            draft_ms_per_token: None,
            verify_ms_per_token: None,
            large_share: mode.starts_with("ead").then_some(0.3),
            worst_prompt: None,
            tokens_per_round_trip: None,
            sources: Default::default(),
        }
    }

    #[test]
    fn writes_the_charts_the_modes_support() {
        let dir = std::env::temp_dir().join(format!("edgespec-charts-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let s = vec![
            summary("target", 30.0, None),
            summary("model:1", 25.0, Some(0.9)),
            summary("model:3", 28.0, Some(0.8)),
            summary("lookup:auto", 33.0, Some(0.5)),
            summary("trimmed@4096:3", 31.0, Some(0.7)),
            summary("trimmed@8192:3", 30.0, Some(0.75)),
            summary("ead:0.5", 40.0, None),
        ];
        let written = write_charts(&s, &dir).unwrap();
        let names: Vec<String> = written
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            names,
            [
                "tok_s-code.svg",
                "gamma-tok_s-code.svg",
                "gamma-alpha-code.svg",
                "k-tok_s-code.svg",
                "k-alpha-code.svg"
            ]
        );
        let svg = std::fs::read_to_string(dir.join("tok_s-code.svg")).unwrap();
        assert!(svg.starts_with("<svg") && svg.contains("lookup:auto"));
        let k = std::fs::read_to_string(dir.join("k-alpha-code.svg")).unwrap();
        assert!(k.contains("trimmed γ=3"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_threads_sweep_gets_its_chart_and_the_rest_show_the_most_threads() {
        let dir = std::env::temp_dir().join(format!("edgespec-threads-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let at = |threads, s: ModeSummary| ModeSummary { threads, ..s };
        let s = vec![
            at(1, summary("target", 15.0, None)),
            at(1, summary("lookup:auto", 17.0, Some(0.5))),
            at(4, summary("target", 30.0, None)),
            at(4, summary("lookup:auto", 33.0, Some(0.5))),
        ];
        let written = write_charts(&s, &dir).unwrap();
        let names: Vec<String> = written
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["tok_s-code.svg", "threads-tok_s-code.svg"]);
        let svg = std::fs::read_to_string(dir.join("threads-tok_s-code.svg")).unwrap();
        assert!(svg.contains("lookup:auto") && svg.contains("target"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
