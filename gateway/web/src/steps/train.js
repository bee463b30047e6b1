// Step 3 — Train and evaluate: the job's progress live (Server-Sent Events from
// WatchTuningJob: loss chart, progress, ETA, events), cancel; then the evaluation the
// job produces: tuned vs base metrics, confusion matrix, worst examples, and
// recommendations whose "Fine-tune again" pre-fills step 2.
import { call, watch } from "../api.js";
import { liveLineChart } from "../charts.js";
import {
  announce, clear, errorBox, fmtDuration, fmtInt, h, num, STATE_LABELS, TERMINAL,
} from "../ui.js";
import { failureCategory, projectOf, recordStep } from "../funnel.js";
import { wizard } from "../state.js";

const EVALUATION_WAIT_SECONDS = 180;

export async function renderTrain(root, { navigate, next }) {
  const state = wizard.get();
  let job = await call("TuningService.GetTuningJob", { name: state.job });
  const stateBadge = h("span", { class: `state ${job.state}` });
  const progress = h("progress", { max: 1, value: 0, "aria-label": "Training progress" });
  const progressText = h("span", { class: "muted" });
  const eta = h("span", { class: "muted" });
  const chart = liveLineChart("Loss", ["training loss", "validation loss"]);
  const events = h("ol", { class: "events", role: "log", "aria-label": "Job events" });
  const cancelButton = h("button", { type: "button", class: "danger" }, "Cancel training");
  const evaluation = h("div");
  const outcome = h("div");

  function showJob() {
    stateBadge.className = `state ${job.state}`;
    stateBadge.textContent = STATE_LABELS[job.state] || job.state;
    const p = job.progress || {};
    progress.value = num(p.fraction_done);
    progressText.textContent = `step ${fmtInt(p.step)} of ${fmtInt(p.total_steps)} · ${Math.round(num(p.fraction_done) * 100)} %`;
    eta.textContent = TERMINAL.has(job.state) ? "" : p.eta ? `about ${fmtDuration(p.eta)} left` : "";
    cancelButton.hidden = TERMINAL.has(job.state) || job.state === "JOB_STATE_CANCELLING";
  }

  function addEvent(text, kind = "") {
    events.prepend(h("li", { class: kind }, text));
    while (events.children.length > 200) events.lastChild.remove();
  }

  function onEvent(e) {
    const time = e.time ? new Date(e.time).toLocaleTimeString() : "";
    if (e.step_metrics) {
      const m = e.step_metrics;
      chart.add(0, num(m.step), m.loss);
      job.progress = { ...(job.progress || {}), step: m.step, total_steps: m.total_steps,
        fraction_done: num(m.total_steps) ? num(m.step) / num(m.total_steps) : 0, eta: m.eta };
      showJob();
    } else if (e.eval_metrics) {
      chart.add(1, num(e.eval_metrics.step), e.eval_metrics.loss);
      addEvent(`${time} evaluated at step ${fmtInt(e.eval_metrics.step)}: validation loss ${Number(e.eval_metrics.loss).toFixed(4)}`);
    } else if (e.state_change) {
      job.state = e.state_change.state;
      showJob();
      addEvent(`${time} ${STATE_LABELS[job.state] || job.state}${e.state_change.message ? ` — ${e.state_change.message}` : ""}`, "state");
      announce(`Training ${STATE_LABELS[job.state] || job.state}`);
    } else if (e.checkpoint_saved) {
      addEvent(`${time} checkpoint saved at step ${fmtInt(e.checkpoint_saved.step)}`);
    } else if (e.log) {
      addEvent(`${time} ${e.log.message}`, "log");
    }
  }

  cancelButton.addEventListener("click", async () => {
    cancelButton.disabled = true;
    try {
      job = await call("TuningService.CancelTuningJob", { name: job.name });
      showJob();
    } catch (err) {
      outcome.append(errorBox(err, { title: "Could not cancel" }));
    } finally {
      cancelButton.disabled = false;
    }
  });

  async function finished() {
    job = await call("TuningService.GetTuningJob", { name: job.name });
    showJob();
    if (job.state === "JOB_STATE_SUCCEEDED") {
      recordStep(projectOf(job.name), "job_succeeded", { resource: job.name });
      clear(outcome, h("p", { class: "success" }, "Training finished."));
      await followEvaluation();
    } else if (job.state === "JOB_STATE_FAILED") {
      recordStep(projectOf(job.name), "job_succeeded", { resource: job.name, failureCategory: failureCategory(job) });
      const f = job.failure || {};
      clear(outcome, h("div", { class: "error", role: "alert" }, h("strong", {}, "Training failed"),
        h("p", {}, f.error?.message || ""), f.hint ? h("p", {}, f.hint) : null,
        h("button", { type: "button", class: "secondary", onclick: () => navigate("/wizard/parameters") }, "Change settings")));
    } else {
      clear(outcome, h("p", {}, "Training was cancelled.",
        h("button", { type: "button", class: "secondary", onclick: () => navigate("/wizard/parameters") }, "Change settings")));
    }
  }

  async function followEvaluation() {
    clear(evaluation, h("h2", {}, "Evaluation"), h("p", { "aria-live": "polite" }, "Waiting for the evaluation to start…"));
    const deadline = Date.now() + EVALUATION_WAIT_SECONDS * 1000;
    while (!job.evaluation && !job.follow_up_error && !job.skip_final_evaluation && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 1500));
      job = await call("TuningService.GetTuningJob", { name: job.name });
    }
    if (!job.evaluation) {
      clear(evaluation, h("h2", {}, "Evaluation"), h("p", {}, job.follow_up_error || "No evaluation was made for this job."),
        h("div", { class: "actions" }, h("button", { type: "button", class: "primary", onclick: next }, "Continue to save")));
      return;
    }
    wizard.set({ evaluation: job.evaluation });
    const evalProgress = h("progress", { max: 1, value: 0, "aria-label": "Evaluation progress" });
    clear(evaluation, h("h2", {}, "Evaluation"), h("p", {}, "Scoring the tuned model and the base model on your test split…"), evalProgress);
    await new Promise((resolve) => {
      watch("EvaluationService.WatchEvaluation", { name: job.evaluation }, {
        onEvent: (e) => { if (e.progress) evalProgress.value = num(e.progress.progress?.fraction_done); },
        onEnd: resolve,
        onError: (err) => { evaluation.append(errorBox(err)); resolve(); },
      }).catch((err) => { evaluation.append(errorBox(err)); resolve(); });
    });
    await showEvaluation(job.evaluation);
  }

  async function showEvaluation(name) {
    const ev = await call("EvaluationService.GetEvaluation", { name });
    const results = ev.results || {};
    const parts = [h("h2", {}, "Evaluation"), results.summary ? h("p", { class: "lead" }, results.summary) : null];
    if (ev.state === "JOB_STATE_FAILED") parts.push(errorBox({ message: ev.failure?.error?.message || "The evaluation failed." }));
    if ((results.metrics || []).length) {
      parts.push(h("div", { class: "scroll" }, h("table", { class: "table metrics" },
        h("caption", {}, "Tuned model against the base model on the test split"),
        h("thead", {}, h("tr", {}, ["Metric", "Base model", "Tuned model", "Change"].map((t) => h("th", { scope: "col" }, t)))),
        h("tbody", {}, results.metrics.map((m) => {
          const delta = num(m.value) - num(m.baseline_value);
          const better = m.higher_is_better ? delta > 0 : delta < 0;
          return h("tr", {}, h("th", { scope: "row" }, m.name), h("td", {}, fmt(m.baseline_value)), h("td", {}, fmt(m.value)),
            h("td", { class: delta === 0 ? "" : better ? "better" : "worse" }, `${delta > 0 ? "+" : ""}${fmt(delta)}`));
        })))));
    }
    const cm = results.confusion_matrix;
    if (cm && (cm.labels || []).length) parts.push(confusionMatrix(cm));
    parts.push(await worstExamples(name), await recommendations(ev));
    parts.push(h("div", { class: "actions" }, h("button", { type: "button", class: "primary", onclick: next }, "Continue to save")));
    clear(evaluation, ...parts);
    if (ev.state === "JOB_STATE_SUCCEEDED") recordStep(projectOf(name), "evaluation_viewed", { resource: name });
  }

  async function worstExamples(name) {
    try {
      const r = await call("EvaluationService.ListExampleResults", { parent: name, order_by: "loss desc", page_size: 10 });
      const rows = r.example_results || [];
      return h("section", {}, h("h3", {}, "Hardest examples"),
        rows.length ? h("div", { class: "scroll" }, h("table", { class: "table" },
          h("thead", {}, h("tr", {}, ["Row", "Input", "Expected", "Predicted", "Score"].map((t) => h("th", { scope: "col" }, t)))),
          h("tbody", {}, rows.map((x) => h("tr", { class: x.correct ? "" : "wrong" }, h("td", {}, fmtInt(x.row)),
            h("td", { class: "text" }, x.input), h("td", {}, x.reference), h("td", {}, x.prediction), h("td", {}, fmt(x.score)))))))
          : h("p", { class: "muted" }, "No examples to show."));
    } catch (err) {
      return errorBox(err);
    }
  }

  async function recommendations(ev) {
    try {
      const r = await call("EvaluationService.ListRecommendations", { parent: ev.name, page_size: 10 });
      const recs = r.recommendations || [];
      return h("section", {}, h("h3", {}, "Recommendations"),
        recs.length ? h("ul", { class: "recs" }, recs.map((rec) => h("li", { class: "card" },
          h("strong", {}, rec.title), h("p", {}, rec.explanation),
          (rec.evidence || []).length ? h("ul", { class: "muted" }, rec.evidence.map((e) => h("li", {}, e.description))) : null,
          rec.applicable ? h("button", { type: "button", class: "secondary", onclick: () => fineTuneAgain(ev, rec) }, "Fine-tune again") : null)))
          : h("p", { class: "muted" }, "No recommendations: nothing obvious to improve."));
    } catch (err) {
      return errorBox(err);
    }
  }

  function fineTuneAgain(ev, rec) {
    const changes = rec.changes || {};
    const merge = (a, b) => {
      const out = { ...(a || {}) };
      for (const [k, v] of Object.entries(b || {})) {
        if (v && typeof v === "object" && !Array.isArray(v)) out[k] = merge(out[k], v);
        else if (v !== undefined && v !== null && !(Array.isArray(v) && !v.length)) out[k] = v;
      }
      return out;
    };
    wizard.set({
      prefill: {
        base_model: changes.base_model || job.base_model,
        method: changes.method && changes.method !== "TUNING_METHOD_UNSPECIFIED" ? changes.method : job.method,
        preset: job.preset,
        hyperparameters: merge(job.hyperparameters, changes.hyperparameters),
        lineage: { source_evaluation: ev.name, source_recommendation: rec.name },
        reason: rec.title,
      },
    });
    navigate("/wizard/parameters");
  }

  clear(root,
    h("h1", {}, "Step 3 — Training"),
    h("section", { class: "card", "aria-labelledby": "job-h" },
      h("h2", { id: "job-h" }, job.display_name || job.name.split("/").pop(), " ", stateBadge),
      h("div", { class: "progress-row" }, progress, progressText, eta),
      chart.figure,
      h("div", { class: "actions" }, cancelButton),
      outcome),
    h("section", { class: "card", "aria-labelledby": "events-h" }, h("h2", { id: "events-h" }, "Events"), events),
    evaluation);
  showJob();
  await watch("TuningService.WatchTuningJob", { name: job.name }, {
    onEvent,
    onEnd: () => finished().catch((err) => outcome.append(errorBox(err))),
    onError: (err) => outcome.append(errorBox(err)),
  });
}

function fmt(v) {
  const n = Number(v || 0);
  return Math.abs(n) >= 100 ? n.toFixed(0) : n.toFixed(3);
}

function confusionMatrix(cm) {
  const labels = cm.labels;
  const counts = (cm.counts || []).map(Number);
  const max = Math.max(1, ...counts);
  const n = labels.length;
  return h("section", {}, h("h3", {}, "Confusion matrix"),
    h("div", { class: "scroll" }, h("table", { class: "table matrix" },
      h("caption", {}, "Rows: the expected label. Columns: what the tuned model predicted."),
      h("thead", {}, h("tr", {}, h("td", {}), labels.map((l) => h("th", { scope: "col" }, l)))),
      h("tbody", {}, labels.map((row, i) => h("tr", {}, h("th", { scope: "row" }, row),
        labels.map((_, j) => {
          const c = counts[i * n + j] || 0;
          return h("td", { style: `--shade:${(c / max).toFixed(2)}`, class: i === j ? "diag" : "" }, fmtInt(c));
        })))))));
}
