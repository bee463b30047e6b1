// Step 2 — Parameters: the base model (size, licence, acknowledgement), a preset in
// plain words, every knob in an "advanced" panel with inline checks, and the estimate
// EstimateTuningJob gives for exactly these settings. Starting creates the job.
import { call } from "../api.js";
import {
  announce, clear, errorBox, fmtBytes, fmtDuration, fmtInt, fmtParams, h, nextId, seconds, TASK_LABELS,
} from "../ui.js";
import { recordStep } from "../funnel.js";
import { wizard } from "../state.js";

const PRESETS = [
  ["PRESET_QUICK", "Quick", "A short run to check everything works: one pass over the data. Minutes, not hours; the model will be rough."],
  ["PRESET_BALANCED", "Balanced", "Good for most data: three passes, checks its progress after each one and stops early when it stops improving."],
  ["PRESET_THOROUGH", "Thorough", "More passes with frequent checks. Slower; often a little better on small datasets."],
  ["PRESET_AUTO", "Let MTW choose", "Picks from the size of your data, the model and the memory available. The estimate below says what it chose."],
];

// Every hyperparameter: [path, label, kind, min, max, help]. Ranges as the API documents them.
const KNOBS = [
  ["method", "Method", ["TUNING_METHOD_LORA", "TUNING_METHOD_FULL"], null, null, "LoRA trains small adapters (less memory, small output); full trains every weight."],
  ["epochs", "Epochs", "int", 1, 100, "Passes over the training data."],
  ["max_steps", "Max steps", "int", 1, 10000000, "Stop after this many optimiser steps, whatever the epochs say."],
  ["learning_rate", "Learning rate", "float", 1e-9, 1, "Peak learning rate; 2e-4 is typical for LoRA, 2e-5 for full."],
  ["lr_scheduler", "Learning-rate schedule", ["LEARNING_RATE_SCHEDULER_LINEAR", "LEARNING_RATE_SCHEDULER_COSINE", "LEARNING_RATE_SCHEDULER_COSINE_WITH_RESTARTS", "LEARNING_RATE_SCHEDULER_POLYNOMIAL", "LEARNING_RATE_SCHEDULER_CONSTANT", "LEARNING_RATE_SCHEDULER_CONSTANT_WITH_WARMUP", "LEARNING_RATE_SCHEDULER_INVERSE_SQRT"], null, null, "How the learning rate changes after warm-up."],
  ["warmup_ratio", "Warm-up share", "float", 0, 0.5, "Share of the steps spent ramping the learning rate up."],
  ["per_device_batch_size", "Batch size per worker", "int", 1, 1024, "Examples per forward pass."],
  ["gradient_accumulation_steps", "Gradient accumulation", "int", 1, 1024, "Forward passes per optimiser step."],
  ["max_seq_length", "Max sequence length (tokens)", "int", 1, 1000000, "Longer examples are cut to this length."],
  ["weight_decay", "Weight decay", "float", 0, 1, "AdamW weight decay."],
  ["seed", "Seed", "int", 0, 2 ** 53, "Same seed, data and settings give the same run."],
  ["eval_interval_steps", "Evaluate every (steps)", "int", 0, 10000000, "0 means after every epoch."],
  ["checkpoint_interval_steps", "Checkpoint every (steps)", "int", 0, 10000000, "0 means after every epoch."],
  ["early_stopping_patience", "Early-stopping patience", "int", 0, 1000, "Evaluations without improvement before stopping; 0 turns it off."],
  ["early_stopping_threshold", "Early-stopping threshold", "float", 0, 1000, "Smallest drop of the validation loss that counts."],
  ["num_workers", "Workers", "int", 1, 64, "Data-parallel training processes."],
  ["use_gpu", "Use a GPU per worker", "bool", null, null, "Only when the cluster has GPUs."],
  ["precision", "Precision", ["PRECISION_FP32", "PRECISION_BF16", "PRECISION_FP16"], null, null, "fp32 is the only choice on CPU workers."],
  ["gradient_checkpointing", "Gradient checkpointing", "bool", null, null, "Less memory, about 30 % slower."],
  ["max_grad_norm", "Max gradient norm", "float", 0, 1000, "Clip gradients to this norm; 0 turns clipping off."],
  ["lora.rank", "LoRA rank", "int", 1, 256, "Size of the adapter matrices."],
  ["lora.alpha", "LoRA alpha", "int", 1, 1024, "Scales the adapter's update (alpha / rank)."],
  ["lora.dropout", "LoRA dropout", "float", 0, 0.5, "Dropout on the adapter input."],
  ["lora.target_modules", "LoRA target modules", "list", null, null, "Comma-separated module names; empty means the model's default."],
];

const enumText = (v) => (v === "TUNING_METHOD_LORA" ? "LoRA"
  : v.replace(/^(TUNING_METHOD|LEARNING_RATE_SCHEDULER|PRECISION)_/, "").replace(/_/g, " ").toLowerCase());

function setPath(obj, path, value) {
  const parts = path.split(".");
  const last = parts.pop();
  let node = obj;
  for (const p of parts) node = node[p] ||= {};
  node[last] = value;
}

// The preset the project's variant of the wizard's A/B experiment starts from, if it names
// one (`preset`: "thorough" or "PRESET_THOROUGH"); null without an experiment or a variant.
async function assignedPreset(project, experiment) {
  if (!experiment) return null;
  try {
    const assignment = await call("InsightsService.GetExperimentAssignment",
      { name: `projects/${project}/experimentAssignments/${experiment}` });
    const named = (assignment.parameters?.preset || "").toUpperCase().replace(/^(PRESET_)?/, "PRESET_");
    return PRESETS.some(([value]) => value === named) ? named : null;
  } catch {
    return null;  // no such experiment yet: the usual default
  }
}

export async function renderParameters(root, { project, experiment, next }) {
  const state = wizard.get();
  const prefill = state.prefill || {};
  const version = await call("DatasetService.GetDatasetVersion", { name: state.version });
  const catalog = (await call("TuningService.ListBaseModels", { page_size: 100 })).base_models || [];
  const models = catalog.filter((m) => (m.supported_tasks || []).includes(version.task));
  let chosenModel = prefill.base_model || (models.find((m) => m.available) || models[0] || {}).name;
  let preset = prefill.preset || (await assignedPreset(project, experiment)) || "PRESET_QUICK";
  const fields = {};  // path → {input, error, kind}
  const estimateBox = h("div", { class: "estimate", "aria-live": "polite" });
  const ESTIMATING = "Estimating… (the first estimate for a model measures its speed and can take a minute or two)";
  const startError = h("div");
  const ackId = nextId("ack");
  const ack = h("input", { type: "checkbox", id: ackId, name: "licence_acknowledged" });
  const ackRow = h("div", { class: "ack", hidden: true }, ack, h("label", { for: ackId }, ""));
  const startButton = h("button", { type: "button", class: "primary big" }, "Start training");

  const modelCards = h("fieldset", { class: "cards" }, h("legend", {}, "Base model"),
    models.length ? models.map((m) => {
      const id = nextId("model");
      const input = h("input", { type: "radio", name: "base_model", id, value: m.name, checked: m.name === chosenModel, disabled: !m.available });
      input.addEventListener("change", () => { chosenModel = m.name; updateLicence(); schedule(); });
      return h("div", { class: "option" }, input, h("label", { for: id },
        h("strong", {}, m.display_name || m.name), h("span", { class: "muted" }, m.description),
        h("span", { class: "meta" }, `${fmtParams(m.parameter_count)} · ${fmtBytes(m.size_bytes)} · licence ${m.licence_name || "unknown"}`,
          m.licence_requires_acknowledgement ? " · needs your acknowledgement" : "", m.available ? "" : " · not available")));
    }) : h("p", {}, `No base model supports ${TASK_LABELS[version.task] || version.task} yet.`));

  const presetCards = h("fieldset", { class: "cards" }, h("legend", {}, "How much training"),
    PRESETS.map(([value, title, text]) => {
      const id = nextId("preset");
      const input = h("input", { type: "radio", name: "preset", id, value, checked: value === preset, "aria-describedby": `${id}-d` });
      input.addEventListener("change", () => { preset = value; schedule(); });
      return h("div", { class: "option" }, input, h("label", { for: id }, h("strong", {}, title), h("span", { id: `${id}-d`, class: "muted" }, text)));
    }));

  const advanced = h("details", { class: "card advanced" }, h("summary", {}, "Advanced settings"),
    h("p", { class: "muted" }, "Leave a box empty to keep the preset's value. Every field is checked as you type."),
    h("div", { class: "grid" }, KNOBS.map(([path, label, kind, min, max, help]) => {
      const id = nextId("hp");
      let input;
      if (Array.isArray(kind)) {
        input = h("select", { id, name: path }, h("option", { value: "" }, "Preset's choice"),
          kind.map((v) => h("option", { value: v }, enumText(v))));
      } else if (kind === "bool") {
        input = h("select", { id, name: path }, h("option", { value: "" }, "Preset's choice"), h("option", { value: "true" }, "yes"), h("option", { value: "false" }, "no"));
      } else {
        input = h("input", { id, name: path, inputmode: kind === "list" ? "text" : "decimal", autocomplete: "off" });
      }
      const error = h("span", { class: "field-error", id: `${id}-e`, "aria-live": "polite" });
      input.setAttribute("aria-describedby", `${id}-h ${id}-e`);
      input.addEventListener("input", () => { check(path); schedule(); });
      fields[path] = { input, error, kind, min, max, label };
      const pre = path === "method" ? prefill.method : path.split(".").reduce((o, k) => (o == null ? undefined : o[k]), prefill.hyperparameters || {});
      if (pre !== undefined && pre !== null && pre !== "") input.value = Array.isArray(pre) ? pre.join(", ") : String(pre);
      return h("div", { class: "field" }, h("label", { for: id }, label), input, h("small", { id: `${id}-h`, class: "muted" }, help), error);
    })));
  if (prefill.hyperparameters || prefill.method) advanced.open = true;

  // Client-side range checks; the service's own field violations are shown the same way.
  function check(path) {
    const f = fields[path];
    const raw = f.input.value.trim();
    let message = "";
    if (raw && (f.kind === "int" || f.kind === "float")) {
      const v = Number(raw);
      if (!Number.isFinite(v)) message = "Enter a number.";
      else if (f.kind === "int" && !Number.isInteger(v)) message = "Enter a whole number.";
      else if (v < f.min || v > f.max) message = `Between ${f.min} and ${f.max}.`;
    }
    showFieldError(path, message);
    return !message;
  }
  function showFieldError(path, message) {
    const f = fields[path];
    f.error.textContent = message;
    f.input.setAttribute("aria-invalid", message ? "true" : "false");
  }

  function spec() {
    const job = { base_model: chosenModel, dataset_version: version.name, preset, hyperparameters: {} };
    for (const [path, f] of Object.entries(fields)) {
      const raw = f.input.value.trim();
      if (!raw) continue;
      let value = raw;
      if (f.kind === "int" || f.kind === "float") value = Number(raw);
      else if (f.kind === "bool") value = raw === "true";
      else if (f.kind === "list") value = raw.split(",").map((s) => s.trim()).filter(Boolean);
      if (path === "method") job.method = value;
      else setPath(job.hyperparameters, path, value);
    }
    if (Object.keys(job.hyperparameters).length && preset === "PRESET_AUTO") job.preset = "PRESET_CUSTOM";
    if (prefill.lineage) job.lineage = prefill.lineage;
    return job;
  }

  function updateLicence() {
    const m = models.find((x) => x.name === chosenModel) || {};
    ackRow.hidden = !m.licence_requires_acknowledgement;
    clear(ackRow.querySelector("label"), "I have read and accept the licence of ", h("strong", {}, m.display_name || ""),
      ": ", m.licence_uri ? h("a", { href: m.licence_uri, target: "_blank", rel: "noopener" }, m.licence_name) : m.licence_name);
  }

  function applyViolations(err) {
    let shown = false;
    for (const v of err.violations || []) {
      const path = v.field.replace(/^tuning_job\.(hyperparameters\.)?/, "");
      if (fields[path]) { showFieldError(path, v.description); shown = true; }
    }
    return shown;
  }

  let timer = null;
  let sequence = 0;
  function schedule() {
    clearTimeout(timer);
    timer = setTimeout(estimate, 300);
  }
  async function estimate() {
    if (!Object.keys(fields).every(check) || !chosenModel) {
      clear(estimateBox, "Fix the highlighted settings to see an estimate.");
      return;
    }
    const mine = ++sequence;
    clear(estimateBox, ESTIMATING);
    try {
      const e = await call("TuningService.EstimateTuningJob", { parent: `projects/${project}`, tuning_job: spec() });
      if (mine !== sequence) return;
      const r = e.resolved_hyperparameters || {};
      clear(estimateBox,
        h("h2", {}, "Estimate"),
        h("p", { class: "big-number" }, seconds(e.estimated_duration) ? `About ${fmtDuration(e.estimated_duration)}` : "Duration not known yet"),
        h("dl", { class: "facts" },
          h("dt", {}, "Training examples"), h("dd", {}, fmtInt(e.train_examples)),
          h("dt", {}, "Steps"), h("dd", {}, `${fmtInt(e.total_steps)} (${fmtInt(e.steps_per_epoch)} per epoch, ${fmtInt(r.epochs)} epoch(s))`),
          h("dt", {}, "Memory per worker"), h("dd", {}, `${fmtBytes(e.peak_memory_bytes)} of ${fmtBytes(e.worker_memory_bytes)}`, e.fits ? " — fits" : " — does not fit"),
          h("dt", {}, "Trained parameters"), h("dd", {}, fmtInt(e.trainable_parameter_count)),
          h("dt", {}, "Settings used"), h("dd", {}, `${(e.preset || "").replace("PRESET_", "").toLowerCase()} preset, learning rate ${r.learning_rate}, batch ${r.per_device_batch_size}, max length ${r.max_seq_length}`)),
        (e.warnings || []).length ? h("ul", { class: "findings" }, e.warnings.map((w) => h("li", {}, w))) : null,
        (e.alternatives || []).length ? h("div", {}, h("h3", {}, "Worth considering"),
          h("ul", {}, e.alternatives.map((a) => h("li", {}, a.explanation, ` (about ${fmtDuration(a.estimated_duration)})`)))) : null);
      announce(seconds(e.estimated_duration) ? `Estimated about ${fmtDuration(e.estimated_duration)}` : "Estimate ready");
    } catch (err) {
      if (mine !== sequence) return;
      const inline = applyViolations(err);
      clear(estimateBox, inline ? h("p", { role: "alert" }, "Some settings need fixing (see the advanced panel).") : errorBox(err, { title: "No estimate" }));
      if (inline) advanced.open = true;
    }
  }

  startButton.addEventListener("click", async () => {
    clear(startError);
    if (!ackRow.hidden && !ack.checked) {
      clear(startError, h("p", { class: "error", role: "alert" }, "Please accept the base model's licence first."));
      ack.focus();
      return;
    }
    startButton.disabled = true;
    try {
      const job = await call("TuningService.CreateTuningJob", {
        parent: `projects/${project}`, request_id: crypto.randomUUID(),
        tuning_job: { ...spec(), licence_acknowledged: ack.checked, display_name: `${state.datasetName || "model"} (${preset.replace("PRESET_", "").toLowerCase()})` },
      });
      wizard.set({ job: job.name, prefill: null, evaluation: null, modelVersion: null });
      recordStep(project, "job_started", { resource: job.name });
      next();
    } catch (err) {
      applyViolations(err);
      clear(startError, errorBox(err, { title: "The job was not started" }));
      startButton.disabled = false;
    }
  });

  clear(root,
    h("h1", {}, "Step 2 — Training settings"),
    h("p", { class: "lead" }, `Your data: ${TASK_LABELS[version.task] || version.task}, ${fmtInt(version.quality_report?.row_count)} rows.`,
      prefill.reason ? h("span", {}, " ", h("strong", {}, "Fine-tuning again: "), prefill.reason) : null),
    h("div", { class: "card" }, modelCards, ackRow),
    h("div", { class: "card" }, presetCards),
    advanced,
    h("section", { class: "card", "aria-label": "Estimate" }, estimateBox),
    startError,
    h("div", { class: "actions" }, startButton));
  updateLicence();
  estimate();
}
