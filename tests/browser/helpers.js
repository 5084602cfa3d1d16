// Read-only probes into JupyterLab for the browser test, installed as an init
// script (window.__e2e). JupyterLab must run with --expose-app-in-browser.
// Each function returns plain JSON; none of them waits, so the Python side
// polls them with page.wait_for_function (which has a timeout) instead of
// awaiting promises in page.evaluate (which has none).
window.__e2e = {
  panel(path) {
    const app = window.jupyterapp;
    if (!app || !app.shell) return null;
    for (const w of app.shell.widgets("main")) {
      if (w.context && w.context.path === path && w.content && w.sessionContext) return w;
    }
    return null;
  },

  statusBarText() {
    const bar = document.querySelector("#jp-main-statusbar");
    return bar ? bar.textContent.replace(/\s+/g, " ") : "";
  },

  // The kernel has started, finished initialising and is idle: the session context
  // says so AND the status bar shows "| Idle" (the execution indicator alone says
  // idle while the kernel is still starting).
  kernelReady(path) {
    const p = this.panel(path);
    if (!p || !p.context.isReady || !p.sessionContext.isReady) return false;
    const kernel = p.sessionContext.session && p.sessionContext.session.kernel;
    if (!kernel || kernel.status !== "idle" || kernel.connectionStatus !== "connected") return false;
    return /\|\s*Idle/.test(this.statusBarText());
  },

  kernelStatus(path) {
    const p = this.panel(path);
    const kernel = p && p.sessionContext.session && p.sessionContext.session.kernel;
    return kernel ? `${kernel.status}/${kernel.connectionStatus}` : "no kernel";
  },

  // Cells, outputs and prompts of the notebook, from the model and the DOM.
  state(path) {
    const p = this.panel(path);
    if (!p) return null;
    const cells = [];
    const widgets = p.content.widgets;
    for (let i = 0; i < widgets.length; i++) {
      const cell = widgets[i];
      const model = cell.model;
      if (model.type !== "code") continue;
      const prompt = cell.node.querySelector(".jp-InputPrompt");
      const errors = [];
      const outputs = model.outputs;
      for (let k = 0; k < outputs.length; k++) {
        const out = outputs.get(k).toJSON();
        if (out.output_type === "error") {
          errors.push(`${out.ename}: ${out.evalue}`);
        }
      }
      // A widget the front end failed to render says so in the output area.
      const shownErrors = [];
      for (const node of cell.node.querySelectorAll(".jp-OutputArea-output")) {
        const text = node.textContent || "";
        if (/Error displaying widget|Failed to load model class|Error rendering output/.test(text)) {
          shownErrors.push(text.slice(0, 300));
        }
      }
      cells.push({
        index: i,
        executionCount: model.executionCount,
        executionState: model.executionState === undefined ? null : model.executionState,
        prompt: prompt ? prompt.textContent.trim() : "",
        errors,
        shownErrors,
        source: model.sharedModel.getSource().slice(0, 200),
      });
    }
    const kernel = p.sessionContext.session && p.sessionContext.session.kernel;
    return {
      kernel: kernel ? kernel.status : "none",
      statusBar: this.statusBarText(),
      cells,
    };
  },

  // Run All has finished: the kernel is idle, no cell is queued or running, and
  // either every code cell ran or one failed (Run All stops at an error).
  runFinished(path) {
    const s = this.state(path);
    if (!s) return false;
    if (s.kernel === "dead") return true;
    if (s.kernel !== "idle" || !/\|\s*Idle/.test(s.statusBar)) return false;
    const running = s.cells.some(
      (c) => c.prompt.includes("*") || c.executionState === "running",
    );
    if (running) return false;
    const failed = s.cells.some((c) => c.errors.length > 0);
    return failed || s.cells.every((c) => c.executionCount !== null);
  },

  scrubbers() {
    return document.querySelectorAll(".timestep-scrubber").length;
  },

  // The k-th scrubber as the learner sees it: the label's text, the slider's value
  // and the image's source (a blob: URL whose bytes the Python side fetches).
  scrubber(k) {
    const root = document.querySelectorAll(".timestep-scrubber")[k];
    if (!root) return null;
    const label = root.querySelector(".timestep-scrubber-label");
    let img = root.querySelector(".timestep-scrubber-image");
    if (img && img.tagName !== "IMG") img = img.querySelector("img");
    const handle = root.querySelector(
      ".timestep-scrubber-slider .noUi-handle, .timestep-scrubber-slider .ui-slider-handle",
    );
    const num = (name) => (handle && handle.hasAttribute(name) ? Number(handle.getAttribute(name)) : null);
    return {
      label: label ? label.textContent.replace(/\s+/g, " ").trim() : null,
      src: img ? img.getAttribute("src") : null,
      imgComplete: img ? img.complete && img.naturalWidth > 0 : false,
      value: num("aria-valuenow"),
      min: num("aria-valuemin"),
      max: num("aria-valuemax"),
    };
  },
};
