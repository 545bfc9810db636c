// Build the repository's Vercel functions with Vercel's own code, as a deployment does: @vercel/fs-detectors
// decides which files are functions and with which config (vercel.json's "functions"), then @vercel/python's
// build() builds each one in one shared work directory. Driven by builder.py, which passes a request file:
//
//   {"nodeDir": ..., "src": repository, "files": [repository-relative paths, as a Git deployment has them],
//    "workPath": the build directory (empty but for Vercel's build cache), "outDir": where to lay out each
//    function, "only": null | ["api/x.py"]}
//
// and reads back outDir/result.json: the detected builds, @vercel/python-analysis's view of the project, and
// per function the Lambda that build() returned, laid out in outDir/<name>/ as /var/task would hold it
// (build() hands back references to files in workPath; they are symlinked, not copied, to stay fast).
'use strict';

const fs = require('fs');
const path = require('path');
const { createRequire } = require('module');

async function main() {
  const request = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));
  const load = createRequire(path.join(request.nodeDir, 'package.json'));
  const buildUtils = load('@vercel/build-utils');
  const detectors = load('@vercel/fs-detectors');
  const analysis = load('@vercel/python-analysis');
  const python = load('@vercel/python');

  const vercelJsonPath = path.join(request.src, 'vercel.json');
  const vercelJson = fs.existsSync(vercelJsonPath) ? JSON.parse(fs.readFileSync(vercelJsonPath, 'utf8')) : {};
  const present = request.files.filter((rel) => fs.statSync(path.join(request.src, rel), { throwIfNoEntry: false })?.isFile());

  const detected = await detectors.detectBuilders(present, null, {
    functions: vercelJson.functions,
    projectSettings: {},
  });
  if (detected.errors?.length) {
    throw new Error(`@vercel/fs-detectors refused the project: ${JSON.stringify(detected.errors)}`);
  }
  const builds = (detected.builders || []).filter((b) => b.use.startsWith('@vercel/python'));

  // What the builder's discoverPackage() sees for an api/ entrypoint (it calls exactly this).
  const pkg = await analysis.discoverPythonPackage({ entrypointDir: path.join(request.src, 'api'), rootDir: request.src });
  const manifest = pkg.manifest;
  const discovery = {
    manifestPath: manifest?.path ?? null,
    convertedFrom: manifest?.origin ? { kind: manifest.origin.kind, path: manifest.origin.path } : null,
    lockFile: manifest?.lockFile?.path ?? pkg.workspaceLockFile?.path ?? null,
    dependencies: manifest?.data?.project?.dependencies ?? [],
    requiresPython: (pkg.requiresPython ?? []).map((c) => ({ source: c.source, specifier: c.specifier })),
  };

  const files = {};
  for (const rel of present) {
    files[rel] = await buildUtils.FileFsRef.fromFsPath({ fsPath: path.join(request.src, rel) });
  }

  const functions = {};
  let packageManifest = null;
  for (const build of builds) {
    if (request.only && !request.only.includes(build.src)) continue;
    console.log(`::: building ${build.src} with ${build.use} (config ${JSON.stringify(build.config)})`);
    const started = Date.now();
    const result = await python.build({
      workPath: request.workPath,
      files,
      entrypoint: build.src,
      meta: {},
      config: build.config,
      repoRootPath: request.workPath,
    });
    const lambda = result.result?.output;
    if (!lambda || lambda.type !== 'Lambda') {
      throw new Error(`build(${build.src}) returned no Lambda: ${JSON.stringify(Object.keys(result))}`);
    }
    const manifestPath = path.join(request.workPath, '.vercel', 'python', 'package-manifest.json');
    if (packageManifest === null && fs.existsSync(manifestPath)) {
      packageManifest = JSON.parse(fs.readFileSync(manifestPath, 'utf8'));
    }
    const buildMs = Date.now() - started;
    const name = path.basename(build.src, '.py');
    const taskDir = path.join(request.outDir, name);
    const counts = await layOut(lambda.files, taskDir);
    functions[build.src] = {
      name,
      taskDir,
      handler: lambda.handler,
      runtime: lambda.runtime,
      architecture: lambda.architecture ?? null,
      environment: lambda.environment,
      maxDuration: lambda.maxDuration ?? null,
      memory: lambda.memory ?? null,
      supportsResponseStreaming: lambda.supportsResponseStreaming ?? null,
      files: counts,
      buildMs,
    };
  }

  const result = { builds, discovery, packageManifest, functions };
  fs.writeFileSync(path.join(request.outDir, 'result.json'), JSON.stringify(result, null, 1));
}

// Lay the Lambda's files out in taskDir. A directory whose files all come from one directory of workPath, and
// are all of that directory's files, becomes one symlink (a site-packages package, say); other files are
// symlinked one by one, and FileBlobs (the trampoline) written. Thousands of symlinks per function would cost
// more time than everything else here.
async function layOut(lambdaFiles, taskDir) {
  const root = { dirs: new Map(), files: new Map() };
  for (const [rel, file] of Object.entries(lambdaFiles)) {
    const parts = rel.split('/');
    let node = root;
    for (const part of parts.slice(0, -1)) {
      if (!node.dirs.has(part)) node.dirs.set(part, { dirs: new Map(), files: new Map() });
      node = node.dirs.get(part);
    }
    node.files.set(parts[parts.length - 1], file);
  }
  const counts = { directoriesLinked: 0, filesLinked: 0, written: 0 };
  fs.mkdirSync(taskDir, { recursive: true });
  place(root, taskDir, counts, true);
  return counts;
}

function place(node, dest, counts, isRoot) {
  const source = isRoot ? null : wholeDirectorySource(node);
  if (source !== null) {
    fs.symlinkSync(source, dest);
    counts.directoriesLinked += 1;
    return;
  }
  if (!isRoot) fs.mkdirSync(dest);
  for (const [name, child] of node.dirs) place(child, path.join(dest, name), counts, false);
  for (const [name, file] of node.files) {
    const target = path.join(dest, name);
    if (file.type === 'FileFsRef') {
      fs.symlinkSync(file.fsPath, target);
      counts.filesLinked += 1;
    } else if (file.type === 'FileBlob') {
      fs.writeFileSync(target, file.data, { mode: file.mode & 0o777 });
      counts.written += 1;
    } else {
      throw new Error(`${target}: a ${file.type}, which this layout does not know`);
    }
  }
}

function filesUnder(node, prefix = '') {
  const out = [];
  for (const [name, file] of node.files) out.push([prefix + name, file]);
  for (const [name, child] of node.dirs) out.push(...filesUnder(child, `${prefix}${name}/`));
  return out;
}

function wholeDirectorySource(node) {
  const files = filesUnder(node);
  if (files.length === 0 || files.some(([, file]) => file.type !== 'FileFsRef')) return null;
  const [firstRel, first] = files[0];
  if (!first.fsPath.endsWith(`/${firstRel}`)) return null;
  const source = first.fsPath.slice(0, -firstRel.length - 1);
  if (files.some(([rel, file]) => file.fsPath !== `${source}/${rel}`)) return null;
  const present = fs.readdirSync(source, { recursive: true, withFileTypes: true })
    .filter((entry) => !entry.isDirectory())
    .map((entry) => path.relative(source, path.join(entry.parentPath ?? entry.path, entry.name)));
  if (present.length !== files.length) return null;
  const wanted = new Set(files.map(([rel]) => rel));
  return present.every((rel) => wanted.has(rel)) ? source : null;
}

main().catch((error) => {
  console.error(error && error.stack ? error.stack : error);
  process.exit(1);
});
