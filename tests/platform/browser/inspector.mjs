// The inspector of `python -m shared serve` in a real browser: Debian's Chromium, driven by Playwright's driver
// (playwright-core, no browser of its own). Reads the list, clicks an entry, replays it to another function, and
// watches the list refresh itself after a new notification.
//
//   node inspector.mjs NODE_MODULES BASE_URL < plan.json
//   plan.json: {"secret": "...", "open": ENTRY_ID, "replay_to": "FUNCTION", "hostile": ENTRY_ID,
//               "fresh": {"function": "...", "body": "<JSON text>"}}
//
// Prints what it saw as JSON: {version, rows, detail, replayed, hostile, refreshed, dialogs, errors, pwned}.
// The assertions are the Python test's (tests/platform/browser/test_inspector_browser.py).
import { createHash } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import path from 'node:path'

const [modules, base] = process.argv.slice(2)
const require = createRequire(path.join(path.resolve(modules), 'package.json'))
const { chromium } = require('playwright-core')
const version = JSON.parse(readFileSync(path.join(modules, 'playwright-core', 'package.json'), 'utf8')).version
const plan = JSON.parse(readFileSync(0, 'utf8'))

const report = { version, dialogs: [], errors: [] }
const browser = await chromium.launch({
  executablePath: '/usr/bin/chromium',
  headless: true,
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
    '--disable-component-update', '--no-first-run'],
})
try {
  const page = await browser.newPage()
  page.setDefaultTimeout(15000)
  page.on('dialog', (dialog) => { report.dialogs.push(dialog.message()); dialog.dismiss() })
  page.on('pageerror', (error) => report.errors.push(`pageerror: ${error.message}`))
  page.on('console', (message) => { if (message.type() === 'error') report.errors.push(message.text()) })

  const rows = async () => page.$$eval('#entries tr.entry', (trs) => trs.map((tr) => {
    const cell = (name) => tr.querySelector(`td.${name}`).textContent
    return {
      id: tr.id, via: cell('via'), function: cell('function'), type: cell('type'), public_id: cell('public-id'),
      signature: cell('signature'), outcome: cell('outcome'), status: cell('status'), actions: cell('actions'),
    }
  }))

  // The list, as a browser asks for it (Accept: text/html...).
  await page.goto(`${base}/`)
  report.title = await page.title()
  report.rows = await rows()

  // One click on a row (not on its link: the row itself) shows the raw body and headers.
  await page.click(`#entry-${plan.open} td.function`)
  await page.waitForURL(`${base}/inspector/entries/${plan.open}`)
  report.detail = {
    url: page.url(),
    body: await page.textContent('#raw-body'),
    headers: await page.textContent('#raw-headers'),
  }

  // Replay it to another function: the page goes back to the list, the new entry there.
  await page.selectOption('#replay-function', plan.replay_to)
  await Promise.all([page.waitForURL(/\/#entry-\d+$/), page.click('#replay')])
  const replayedId = new URL(page.url()).hash.slice(1)
  await page.waitForSelector(`#${replayedId}`)
  report.replayed = { url: page.url(), row: (await rows()).find((row) => row.id === replayedId) }

  // The hostile entry's page: its payload is text on the page, never markup.
  await page.goto(`${base}/inspector/entries/${plan.hostile}`)
  report.hostile = {
    public_id: await page.textContent('td.public-id'),
    body: await page.textContent('#raw-body'),
    images: await page.$$eval('img', (images) => images.length),
    scripts: await page.$$eval('script', (scripts) => scripts.length),
    pwned: await page.evaluate(() => window.__pwned ?? null),
  }

  // A notification arriving while the list is open: the page refreshes itself.
  await page.goto(`${base}/`)
  const shownBefore = (await rows()).length
  const timestamp = String(Math.floor(Date.now() / 1000))
  const signature = createHash('sha1').update(plan.fresh.body + timestamp + plan.secret).digest('hex')
  const sent = await fetch(`${base}/api/${plan.fresh.function}`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', 'X-Cld-Timestamp': timestamp, 'X-Cld-Signature': signature },
    body: plan.fresh.body,
  })
  report.fresh_status = sent.status
  await page.waitForFunction((count) => document.querySelectorAll('#entries tr.entry').length > count,
    shownBefore, { timeout: 10000 })
  report.refreshed = (await rows())[0]
  report.pwned = await page.evaluate(() => window.__pwned ?? null)
} finally {
  await browser.close()
}
process.stdout.write(JSON.stringify(report))
