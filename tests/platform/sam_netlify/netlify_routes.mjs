// Route request paths through Netlify's own code, as a deployed site would: @netlify/config reads netlify.toml
// (offline: no Netlify API), @netlify/redirect-parser turns its redirects into rules, netlify-redirector (Netlify's
// matcher, the one `netlify dev` uses) matches each path. The same steps, in the same order, as @netlify/redirects.
//
//   node netlify_routes.mjs NODE_MODULES REPOSITORY_ROOT < paths.json     (paths.json: ["/webhooks/a", ...])
//
// Prints {versions, redirects, errors, matches: {path: rule or null}} as JSON.
import { readFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import path from 'node:path'
import { pathToFileURL } from 'node:url'

const [modules, root] = process.argv.slice(2)
const require = createRequire(path.join(path.resolve(modules), 'package.json'))
const load = async (name) => import(pathToFileURL(require.resolve(name)).href)
const version = (name) => JSON.parse(readFileSync(path.join(modules, name, 'package.json'), 'utf8')).version

const { resolveConfig } = await load('@netlify/config')
const { parseAllRedirects } = await load('@netlify/redirect-parser')
const redirector = require('netlify-redirector')

const paths = JSON.parse(readFileSync(0, 'utf8'))
const resolved = await resolveConfig({
  config: path.join(root, 'netlify.toml'),
  repositoryRoot: root,
  cwd: root,
  context: 'production',
  offline: true,
  buffer: true,
})
const parsed = await parseAllRedirects({
  configRedirects: resolved.config.redirects,
  redirectsFiles: [resolved.redirectsPath],
  minimal: false,
})
// @netlify/redirects' normalizeRedirect: the field names the matcher expects
const rules = parsed.redirects.map(({ conditions, from, query, signed, ...rule }) => ({
  ...rule,
  origin: from,
  params: query,
  conditions,
  ...(signed && { sign: { jwt_secret: signed } }),
}))
const matcher = await redirector.parseJSON(JSON.stringify(rules), {})
const matches = {}
for (const requestPath of paths) {
  const headers = {}
  matches[requestPath] = matcher.match({
    scheme: 'https',
    host: 'cloudinary-webhooks.netlify.app',
    path: requestPath,
    query: '',
    headers,
    cookieValues: {},
    getHeader: () => '',
    getCookie: () => '',
  })
}
process.stdout.write(JSON.stringify({
  versions: Object.fromEntries(['@netlify/config', '@netlify/redirect-parser', 'netlify-redirector']
    .map((name) => [name, version(name)])),
  configPath: resolved.configPath,
  redirects: resolved.config.redirects,
  errors: parsed.errors.map((error) => error.message),
  matches,
}))
