//! The storm as a PNG: load over the whole simulated span against the CA's
//! capacity, then a close-up of the outage (load, and the queue of devices
//! waiting). Text is drawn with DejaVu Sans loaded at run time.

use std::path::Path;

use anyhow::{anyhow, Context, Result};
use plotters::prelude::*;

use super::sim::{Sample, BUCKET};
use super::StormReport;

/// The TTF font the plot's text uses (Debian's fonts-dejavu-core).
pub const FONT: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";

fn load_font() -> Result<()> {
    let bytes = std::fs::read(FONT).with_context(|| {
        format!(
            "cannot read the plot font {FONT}: install fonts-dejavu-core (scripts/install-deps.sh)"
        )
    })?;
    // plotters keeps the font for the whole process.
    let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
    plotters::style::register_font("sans-serif", FontStyle::Normal, bytes)
        .map_err(|_| anyhow!("{FONT} is not a usable TrueType font"))
}

/// Per-second rates of `samples` in [from, to) days, merged `merge` buckets at a time.
fn rates(samples: &[Sample], merge: usize, pick: fn(&Sample) -> f64) -> Vec<(f64, f64)> {
    samples
        .chunks(merge.max(1))
        .enumerate()
        .map(|(i, chunk)| {
            let t = (i * merge.max(1)) as f64 * f64::from(BUCKET) / 86_400.0;
            let v = chunk.iter().map(pick).sum::<f64>() / chunk.len() as f64;
            (t, v)
        })
        .collect()
}

fn attempts(s: &Sample) -> f64 {
    f64::from(s.attempts) / f64::from(BUCKET)
}
fn served(s: &Sample) -> f64 {
    f64::from(s.served) / f64::from(BUCKET)
}
fn queue(s: &Sample) -> f64 {
    f64::from(s.queue)
}

fn err<E: std::fmt::Display>(e: E) -> anyhow::Error {
    anyhow!("drawing the storm plot: {e}")
}

/// Draws `report` into `path` (PNG).
pub fn draw(report: &StormReport, path: &Path) -> Result<()> {
    load_font()?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let root = BitMapBackend::new(path, (1400, 1300)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let panels = root.split_evenly((3, 1));
    let cap = report.capacity_per_s;
    let days = f64::from(report.days);
    let floor = 0.01;
    let top = (cap * 3.0).max(1.0);

    // 1: the whole span, hourly means, log scale.
    let hourly = 3600 / BUCKET as usize;
    let normal = rates(&report.normal_samples, hourly, attempts);
    let mut chart = ChartBuilder::on(&panels[0])
        .caption(
            format!(
                "{} cards, {:.0}-day certificates, renewal at {:.0} % ± {:.0} %: CA load (hourly mean)",
                report.cards,
                report.lifetime_days,
                report.renewal_fraction * 100.0,
                report.jitter_fraction * 100.0
            ),
            ("sans-serif", 22),
        )
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(80)
        .build_cartesian_2d(0f64..days, (floor..top).log_scale())
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("day")
        .y_desc("requests / s")
        .label_style(("sans-serif", 15))
        .draw()
        .map_err(err)?;
    chart
        .draw_series(LineSeries::new(
            normal.iter().map(|&(t, v)| (t, v.max(floor))),
            &BLUE,
        ))
        .map_err(err)?
        .label("requests (enrolments + renewals)")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLUE));
    chart
        .draw_series(LineSeries::new(
            vec![(0.0, cap), (days, cap)],
            RED.stroke_width(2),
        ))
        .map_err(err)?
        .label(format!("CA capacity measured: {cap:.0} requests/s"))
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], RED));
    chart
        .configure_series_labels()
        .label_font(("sans-serif", 16))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(err)?;

    // 2 and 3: around the outage, 10-minute means.
    let start = f64::from(report.outage.outage_start.unwrap_or(0)) / 86_400.0;
    let end = start + f64::from(report.outage_hours) / 24.0;
    let (from, to) = ((start - 0.5).max(0.0), (end + 2.0).min(days));
    let window = |v: Vec<(f64, f64)>| -> Vec<(f64, f64)> {
        v.into_iter()
            .filter(|(t, _)| *t >= from && *t <= to)
            .collect()
    };
    let ten = 600 / BUCKET as usize;
    let base = window(rates(&report.normal_samples, ten, attempts));
    let down = window(rates(&report.outage_samples, ten, attempts));
    let done = window(rates(&report.outage_samples, ten, served));
    let mut chart = ChartBuilder::on(&panels[1])
        .caption(
            format!(
                "CA down {} h from day {start:.2} (the busiest day): load, 10-minute means",
                report.outage_hours
            ),
            ("sans-serif", 22),
        )
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(80)
        .build_cartesian_2d(from..to, (floor..top).log_scale())
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("day")
        .y_desc("requests / s")
        .label_style(("sans-serif", 15))
        .draw()
        .map_err(err)?;
    chart
        .draw_series(LineSeries::new(
            base.iter().map(|&(t, v)| (t, v.max(floor))),
            &BLUE,
        ))
        .map_err(err)?
        .label("requests, CA up")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLUE));
    chart
        .draw_series(LineSeries::new(
            down.iter().map(|&(t, v)| (t, v.max(floor))),
            MAGENTA.stroke_width(2),
        ))
        .map_err(err)?
        .label("requests (with retries), CA down")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], MAGENTA));
    chart
        .draw_series(LineSeries::new(
            done.iter().map(|&(t, v)| (t, v.max(floor))),
            GREEN.stroke_width(2),
        ))
        .map_err(err)?
        .label("certificates issued, CA down")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], GREEN));
    chart
        .draw_series(LineSeries::new(
            vec![(from, cap), (to, cap)],
            RED.stroke_width(2),
        ))
        .map_err(err)?
        .label("CA capacity")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], RED));
    chart
        .draw_series(std::iter::once(Rectangle::new(
            [(start, floor), (end, top)],
            RGBColor(128, 128, 128).mix(0.15).filled(),
        )))
        .map_err(err)?;
    chart
        .configure_series_labels()
        .label_font(("sans-serif", 16))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(err)?;

    let q_base = window(rates(&report.normal_samples, ten, queue));
    let q_down = window(rates(&report.outage_samples, ten, queue));
    let q_top = q_down
        .iter()
        .chain(q_base.iter())
        .map(|(_, v)| *v)
        .fold(1.0, f64::max)
        * 1.1;
    let mut chart = ChartBuilder::on(&panels[2])
        .caption(
            "devices waiting for their certificate (queue)",
            ("sans-serif", 22),
        )
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(80)
        .build_cartesian_2d(from..to, 0f64..q_top)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("day")
        .y_desc("devices")
        .label_style(("sans-serif", 15))
        .draw()
        .map_err(err)?;
    chart
        .draw_series(LineSeries::new(q_base, &BLUE))
        .map_err(err)?
        .label("CA up")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLUE));
    chart
        .draw_series(LineSeries::new(q_down, MAGENTA.stroke_width(2)))
        .map_err(err)?
        .label("CA down")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], MAGENTA));
    chart
        .draw_series(std::iter::once(Rectangle::new(
            [(start, 0.0), (end, q_top)],
            RGBColor(128, 128, 128).mix(0.15).filled(),
        )))
        .map_err(err)?;
    chart
        .configure_series_labels()
        .label_font(("sans-serif", 16))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(err)?;
    root.present().map_err(err)?;
    Ok(())
}
