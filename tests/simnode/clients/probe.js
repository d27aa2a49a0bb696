// c-ares through Node (`dns.Resolver`), as a pod's Node program resolves. Same
// arguments and output as probe.go; c-ares tells NXDOMAIN (ENOTFOUND) from NODATA
// (ENODATA).
'use strict';
const dns = require('dns');

const resolver = new dns.promises.Resolver({ timeout: 5000, tries: 3 });

async function lookup(kind, name) {
  switch (kind) {
    case 'a':
      return (await resolver.resolve4(name)).map((a) => `A ${a}`);
    case 'aaaa':
      return (await resolver.resolve6(name)).map((a) => `AAAA ${a}`);
    case 'srv':
      return (await resolver.resolveSrv(name)).map(
        (s) => `SRV ${s.priority} ${s.weight} ${s.port} ${s.name}.`);
    case 'txt':
      return (await resolver.resolveTxt(name)).map((chunks) => `TXT ${chunks.join('')}`);
    default:
      throw new Error(`bad kind ${kind}`);
  }
}

async function main() {
  const args = process.argv.slice(2);
  for (let i = 0; i < args.length; i++) {
    const at = args[i].indexOf(':');
    const [kind, name] = [args[i].slice(0, at), args[i].slice(at + 1)];
    try {
      const lines = await lookup(kind, name);
      for (const line of lines) console.log(`${i}\t${line}`);
      if (lines.length === 0) console.log(`${i}\tNODATA`);
    } catch (e) {
      if (e.code === 'ENOTFOUND') console.log(`${i}\tNXDOMAIN`);
      else if (e.code === 'ENODATA') console.log(`${i}\tNODATA`);
      else console.log(`${i}\tERR ${e.code || e.message}`);
    }
  }
}

main();
