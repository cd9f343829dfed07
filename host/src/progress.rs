//! Build progress on stderr: a spinner per image on a terminal, plain lines otherwise.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use skillhost::engine::BuildEvent;
use skillhost::image_build::Observer;

/// Where build progress goes, chosen once for the whole run.
pub struct Progress {
    bars: Option<(MultiProgress, Mutex<HashMap<String, ProgressBar>>)>,
}

impl Progress {
    pub fn new() -> Arc<Progress> {
        let bars = std::io::stderr()
            .is_terminal()
            .then(|| (MultiProgress::new(), Mutex::new(HashMap::new())));
        Arc::new(Progress { bars })
    }

    pub fn observer(self: &Arc<Self>) -> Observer {
        let this = self.clone();
        Arc::new(move |name, event| this.event(name, event))
    }

    fn event(&self, name: &str, event: BuildEvent) {
        let (kind, text) = match &event {
            BuildEvent::Step(text) => ("step", text),
            BuildEvent::Output(text) => ("output", text),
        };
        let Some((multi, bars)) = &self.bars else {
            if kind == "step" {
                eprintln!("{name}: {text}");
            } else {
                eprintln!("{name}:   {text}");
            }
            return;
        };
        let mut bars = bars.lock().unwrap_or_else(|e| e.into_inner());
        let bar = bars.entry(name.to_string()).or_insert_with(|| {
            let bar = multi.add(ProgressBar::new_spinner());
            bar.set_style(
                ProgressStyle::with_template("{spinner} {prefix:.bold} {wide_msg}")
                    .expect("valid template"),
            );
            bar.set_prefix(name.to_string());
            bar.enable_steady_tick(Duration::from_millis(120));
            bar
        });
        if kind == "step" {
            // Steps stay visible above the spinner; output only flashes past.
            let _ = multi.println(format!("{name}: {text}"));
        }
        bar.set_message(text.clone());
    }

    /// Stop the spinner of `name`, if any, so the final line is clean.
    pub fn finish(&self, name: &str) {
        if let Some((_, bars)) = &self.bars {
            if let Some(bar) = bars.lock().unwrap_or_else(|e| e.into_inner()).remove(name) {
                bar.finish_and_clear();
            }
        }
    }
}
