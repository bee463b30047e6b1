// What the wizard has made so far (kept for this tab, so a reload resumes the step).
const KEY = "mtw.wizard";

function load() {
  try { return JSON.parse(sessionStorage.getItem(KEY)) || {}; } catch { return {}; }
}

export const wizard = {
  get: () => load(),
  set(values) { sessionStorage.setItem(KEY, JSON.stringify({ ...load(), ...values })); },
  reset() { sessionStorage.removeItem(KEY); },
  // Step i can be opened once the steps before it have produced what it needs.
  reachable(i) {
    const s = load();
    return [true, Boolean(s.version), Boolean(s.job), Boolean(s.job)][i];
  },
};
