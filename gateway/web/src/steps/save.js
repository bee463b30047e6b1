// Step 4 — Save and use: register the tuned model under a name with an alias, read its
// model card, try it (Predict), copy code to call it, download it; then the survey.
import { ApiError, call } from "../api.js";
import { clear, copyButton, errorBox, fmtBytes, h, nextId, slug, TASK_LABELS } from "../ui.js";
import { projectOf, recordStep } from "../funnel.js";
import { wizard } from "../state.js";
import { surveyCard } from "./survey.js";

export async function renderSave(root, { project }) {
  const state = wizard.get();
  const job = await call("TuningService.GetTuningJob", { name: state.job });
  const ids = { name: nextId("name"), description: nextId("desc"), alias: nextId("alias") };
  const saved = h("div");
  const formError = h("div");
  // A job started with "register to model" saved itself: only the alias is left to choose.
  const naming = job.model_version
    ? [h("p", {}, "This job saved its model as ", h("code", {}, job.model_version), " when it finished.")]
    : [h("label", { for: ids.name }, "Name"),
      h("input", { id: ids.name, name: "name", required: true, value: state.datasetName ? `${state.datasetName} model` : "", "aria-describedby": `${ids.name}-h` }),
      h("small", { id: `${ids.name}-h`, class: "muted" }, "How you and your team will find it."),
      h("label", { for: ids.description }, "Description"),
      h("textarea", { id: ids.description, name: "description", rows: 2 })];
  const form = h("form", { class: "card", novalidate: true },
    h("h2", {}, "Name your model"),
    naming,
    h("label", { for: ids.alias }, "Alias"),
    h("input", { id: ids.alias, name: "alias", value: "production", pattern: "[a-z][a-z0-9-]*", "aria-describedby": `${ids.alias}-h` }),
    h("small", { id: `${ids.alias}-h`, class: "muted" }, "A stable name for this version, e.g. production. Point it at a newer version later without changing your code."),
    formError,
    h("div", { class: "actions" }, h("button", { type: "submit", class: "primary" }, "Save model")));

  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    clear(formError);
    if (job.state !== "JOB_STATE_SUCCEEDED") {
      clear(formError, errorBox({ message: "Only a job that finished training can be saved." }));
      return;
    }
    const button = form.querySelector("button[type=submit]");
    button.disabled = true;
    try {
      const version = job.model_version
        ? await call("RegistryService.GetModelVersion", { name: job.model_version })
        : await register(form.name.value.trim(), form.description.value.trim());
      const alias = form.alias.value.trim();
      if (alias) {
        await call("RegistryService.SetAlias", { registered_model: version.name.split("/versions/")[0], alias, model_version: version.name });
      }
      wizard.set({ modelVersion: version.name, alias: form.alias.value.trim() });
      recordStep(projectOf(version.name), "model_saved", { resource: version.name });
      await showModel(version.name, form.alias.value.trim());
    } catch (err) {
      clear(formError, errorBox(err, { title: "The model was not saved" }));
    } finally {
      button.disabled = false;
    }
  });

  async function register(displayName, description) {
    let model;
    try {
      model = await call("RegistryService.CreateRegisteredModel", {
        parent: `projects/${project}`, registered_model_id: slug(displayName, "model"),
        registered_model: { display_name: displayName, description, task: job.task },
      });
    } catch (err) {
      if (!(err instanceof ApiError && err.status === "ALREADY_EXISTS")) throw err;
      throw new Error("A model with that name exists already; choose another name.");
    }
    return call("RegistryService.CreateModelVersion", {
      parent: model.name, tuning_job: job.name, description, request_id: crypto.randomUUID(),
      evaluations: state.evaluation ? [state.evaluation] : [],
    });
  }

  async function showModel(versionName, alias) {
    const modelName = versionName.split("/versions/")[0];
    const target = alias ? `${modelName}@${alias}` : versionName;
    const card = h("section", { class: "card", "aria-labelledby": "card-h" }, h("h2", { id: "card-h" }, "Model card"));
    try {
      const mc = await call("RegistryService.GetModelCard", { name: versionName });
      card.append(h("pre", { class: "model-card", tabindex: "0" }, mc.markdown));
    } catch (err) {
      card.append(errorBox(err));
    }
    clear(saved,
      h("p", { class: "success", role: "status" }, "Saved as ", h("code", {}, target)),
      tryIt(target), card, snippets(target), await downloads(versionName), await surveyCard(versionName));
  }

  function tryIt(target) {
    const id = nextId("try");
    const input = h("textarea", { id, rows: 3, placeholder: job.task === "TASK_SEQUENCE_CLASSIFICATION" ? "Paste a text to classify" : "Write a prompt" });
    const out = h("div", { "aria-live": "polite", class: "prediction" });
    const button = h("button", { type: "submit", class: "primary" }, "Predict");
    const formEl = h("form", { class: "card", "aria-labelledby": `${id}-h` },
      h("h2", { id: `${id}-h` }, "Try it"), h("label", { for: id }, "Input"), input, h("div", { class: "actions" }, button), out);
    formEl.addEventListener("submit", async (e) => {
      e.preventDefault();
      if (!input.value.trim()) return;
      button.disabled = true;
      clear(out, "Thinking…");
      try {
        const inputs = job.task === "TASK_CHAT_SFT"
          ? [{ conversation: { messages: [{ role: "user", content: input.value }] } }]
          : [{ text: input.value }];
        const r = await call("RegistryService.Predict", { name: target, inputs, top_k: 3 });
        const p = (r.predictions || [])[0] || {};
        if (p.classification) {
          clear(out, h("p", { class: "big-number" }, p.classification.label),
            h("ul", {}, (p.classification.scores || []).map((s) => h("li", {}, `${s.label}: ${(Number(s.score) * 100).toFixed(1)} %`))));
        } else {
          clear(out, h("pre", {}, p.generation?.text || ""));
        }
      } catch (err) {
        clear(out, errorBox(err, { title: "No prediction" }));
      } finally {
        button.disabled = false;
      }
    });
    return formEl;
  }

  function snippets(target) {
    const origin = location.origin;
    const sample = job.task === "TASK_SEQUENCE_CLASSIFICATION" ? "The committee approved the budget." : "Hello!";
    const input = job.task === "TASK_CHAT_SFT"
      ? `{"conversation": {"messages": [{"role": "user", "content": "${sample}"}]}}` : `{"text": "${sample}"}`;
    const tabs = [
      ["Python SDK", `import mtw\n\nclient = mtw.Client()  # reads MTW_API_KEY and MTW_PROJECT\nprint(client.models.predict("${target}", "${sample}"))`],
      ["LangChain", `import mtw\nfrom mtw.langchain import runnable\n\nmodel = runnable(mtw.Client(), "${target}")  # classifier, LLM or chat model by task\nprint(model.invoke("${sample}"))`],
      ["curl", `curl -s -X POST "${origin}/v1/${target}:predict" \\\n  -H "Authorization: Bearer $MTW_API_KEY" \\\n  -H "Content-Type: application/json" \\\n  -d '{"inputs": [${input}]}'`],
      ["grpcurl", `grpcurl -plaintext \\\n  -H "authorization: Bearer $MTW_API_KEY" \\\n  -d '{"name": "${target}", "inputs": [${input}]}' \\\n  127.0.0.1:50054 mtw.registry.v1.RegistryService/Predict`],
    ];
    return h("section", { class: "card", "aria-labelledby": "use-h" }, h("h2", { id: "use-h" }, "Use it from code"),
      tabs.map(([title, code]) => h("div", { class: "snippet" },
        h("div", { class: "snippet-head" }, h("h3", {}, title), copyButton(() => code, `Copy ${title}`)),
        h("pre", { tabindex: "0", "aria-label": `${title} example` }, h("code", {}, code)))));
  }

  async function downloads(versionName) {
    const section = h("section", { class: "card", "aria-labelledby": "dl-h" }, h("h2", { id: "dl-h" }, "Download"));
    try {
      const r = await call("RegistryService.GetDownloadUrls", { name: versionName, include_archive: true });
      section.append(h("ul", {},
        r.archive?.url ? h("li", {}, h("a", { href: r.archive.url, download: "" }, "Everything as one archive"), ` (${fmtBytes(r.archive.size_bytes)})`) : null,
        (r.files || []).map((f) => h("li", {}, h("a", { href: f.url, download: "" }, f.path), ` (${fmtBytes(f.size_bytes)})`))),
      h("p", { class: "muted" }, "Links work for a limited time. The folder loads with Hugging Face transformers (and peft for adapters)."));
    } catch (err) {
      section.append(errorBox(err));
    }
    return section;
  }

  clear(root, h("h1", {}, "Step 4 — Save and use"),
    h("p", { class: "lead" }, `${TASK_LABELS[job.task] || ""} model trained by ${job.display_name || job.name}.`),
    state.modelVersion ? null : form, saved);
  if (state.modelVersion) await showModel(state.modelVersion, state.alias);
}
