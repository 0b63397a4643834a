// Drives the simulator with Xen Orchestra's xen-api client: connect, list VMs, start one
// (through Async + task events), see the VM's event, and get VM_BAD_POWER_STATE on a second
// start.  Usage: node xo_client.mjs <xen-api index.mjs> <url> <user> <password> <transport>
const [modulePath, url, user, password, transport] = process.argv.slice(2)
const { createClient } = await import(modulePath)

const timeout = (ms, what) =>
  new Promise((_, reject) => setTimeout(() => reject(new Error('timeout: ' + what)), ms))

const xapi = createClient({ url, auth: { user, password }, allowUnauthorized: true, transport })
await xapi.connect()
await Promise.race([xapi.objectsFetched, timeout(15000, 'objectsFetched')])
const all = Object.values(xapi.objects.all)
const vms = all.filter(o => o.$type === 'VM' && !o.is_control_domain && !o.is_a_template)
const vm = vms.find(v => v.power_state === 'Halted')
const seen = new Promise(resolve => {
  xapi.objects.on('update', objects => {
    for (const o of Object.values(objects)) {
      if (o.$ref === vm.$ref && o.power_state === 'Running') resolve(o)
    }
  })
})
const result = await Promise.race([xapi.callAsync('VM.start', vm.$ref, false, false),
  timeout(15000, 'callAsync')])
const updated = await Promise.race([seen, timeout(15000, 'VM event')])
let error = null
try {
  await xapi.call('VM.start', vm.$ref, false, false)
} catch (e) {
  error = { code: e.code, params: e.params }
}
const pool = Object.values(xapi.objects.all).find(o => o.$type === 'pool')
console.log(JSON.stringify({
  vms: vms.map(v => v.name_label).sort(),
  asyncResult: result === undefined ? null : result,
  started: updated.power_state,
  domid: updated.domid,
  error,
  poolName: pool.name_label,
  types: [...new Set(Object.values(xapi.objects.all).map(o => o.$type))].sort(),
}))
await xapi.disconnect()
process.exit(0)
