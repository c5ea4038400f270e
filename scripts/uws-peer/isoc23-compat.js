#!/usr/bin/env node
// isoc23-compat.js IN OUT: writes to OUT a copy of the shared object IN whose imports of glibc's C23
// aliases (__isoc23_strtol, __isoc23_sscanf, …: glibc 2.38 added them, and a compiler in C23 or gnu2x
// mode calls them instead of strtol, sscanf, …) are turned back into the plain functions, so that a
// binary linked against glibc 2.38 loads on an older one (Debian 12 has 2.36). scripts/uws-peer/install.sh
// runs it on the prebuilt uWebSockets.js binary when that fails to load for this reason.
//
// What changes in OUT (a 64-bit little-endian ELF file; nothing moves, no byte is added):
//   - each undefined dynamic symbol __isoc23_NAME of a version newer than this machine's glibc is
//     renamed NAME: its name is the tail of the same string in .dynstr, so only st_name moves on;
//   - each such version in .gnu.version_r (the "GLIBC_2.38" that libc.so.6 must provide) is made to
//     name libc's base version instead (GLIBC_2.2.5 on x86-64, GLIBC_2.17 on arm64: vna_name and
//     vna_hash copied from the entry that already names it), so the renamed symbols bind to
//     NAME@<base> and the loader finds every version it is asked for.
// The one difference in behaviour: strtol & co. with base 0 or 2 do not read a "0b" prefix.
// It refuses (exit 1, OUT not written) when a symbol of such a version is not one of the C23 aliases
// below, or when the file is not what it expects. A file with nothing to change is copied as is.
// Prints what it did on stdout.
'use strict';
const fs = require('fs');

// The __isoc23_ aliases whose plain function is in libc's base version on x86-64 and arm64.
const ALIASED = new Set([
  'strtol', 'strtoul', 'strtoll', 'strtoull', 'strtoimax', 'strtoumax',
  'wcstol', 'wcstoul', 'wcstoll', 'wcstoull', 'wcstoimax', 'wcstoumax',
  'sscanf', 'fscanf', 'scanf', 'vsscanf', 'vfscanf', 'vscanf',
  'swscanf', 'fwscanf', 'wscanf', 'vswscanf', 'vfwscanf', 'vwscanf',
]);
const PREFIX = '__isoc23_';
const BASE = { 62: 'GLIBC_2.2.5', 183: 'GLIBC_2.17' }; // by e_machine: EM_X86_64, EM_AARCH64
const SHT_DYNSYM = 11, SHT_GNU_VERNEED = 0x6ffffffe, SHT_GNU_VERSYM = 0x6fffffff;

function fail(msg) {
  console.error(`isoc23-compat: ${msg}`);
  process.exit(1);
}

const [input, output] = process.argv.slice(2);
if (!input || !output) fail('usage: isoc23-compat.js IN OUT');
const buf = fs.readFileSync(input);
if (buf.readUInt32BE(0) !== 0x7f454c46 || buf[4] !== 2 || buf[5] !== 1) {
  fail(`${input}: not a 64-bit little-endian ELF file`);
}
const base = BASE[buf.readUInt16LE(0x12)];
if (!base) fail(`${input}: machine ${buf.readUInt16LE(0x12)} is neither x86-64 nor arm64`);

// This machine's glibc, as "2.36".
const runtime = process.report.getReport().header.glibcVersionRuntime;
if (!runtime) fail('not running on glibc');
const newer = (ver) => {            // "GLIBC_2.38" newer than the runtime?
  const m = /^GLIBC_(\d+)\.(\d+)/.exec(ver);
  if (!m) return false;
  const [maj, min] = runtime.split('.').map(Number);
  return Number(m[1]) > maj || (Number(m[1]) === maj && Number(m[2]) > min);
};

// Section headers, found by type (no section names needed).
const shoff = Number(buf.readBigUInt64LE(0x28));
const shentsize = buf.readUInt16LE(0x3a), shnum = buf.readUInt16LE(0x3c);
const sections = [];
for (let i = 0; i < shnum; i++) {
  const o = shoff + i * shentsize;
  sections.push({
    type: buf.readUInt32LE(o + 4),
    offset: Number(buf.readBigUInt64LE(o + 24)),
    size: Number(buf.readBigUInt64LE(o + 32)),
    link: buf.readUInt32LE(o + 40),
    info: buf.readUInt32LE(o + 44),
  });
}
const byType = (t) => sections.find((s) => s.type === t) || fail(`${input}: no section of type ${t.toString(16)}`);
const dynsym = byType(SHT_DYNSYM), versym = byType(SHT_GNU_VERSYM), verneed = byType(SHT_GNU_VERNEED);
const dynstr = sections[dynsym.link];
const str = (off) => {
  const at = dynstr.offset + off;
  return buf.toString('latin1', at, buf.indexOf(0, at));
};

// .gnu.version_r: the versions libc.so.6 must provide, by name and by index (vna_other).
const libc = new Map();             // name -> { at (offset of the Vernaux), index, hash, nameOff }
for (let n = 0, vn = verneed.offset; n < verneed.info; n++) {
  const cnt = buf.readUInt16LE(vn + 2), file = str(buf.readUInt32LE(vn + 4));
  for (let k = 0, aux = vn + buf.readUInt32LE(vn + 8); k < cnt; k++) {
    if (file === 'libc.so.6') {
      const nameOff = buf.readUInt32LE(aux + 8);
      libc.set(str(nameOff), { at: aux, index: buf.readUInt16LE(aux + 6), hash: buf.readUInt32LE(aux), nameOff });
    }
    aux += buf.readUInt32LE(aux + 12);
  }
  vn += buf.readUInt32LE(vn + 12);
}
const baseEntry = libc.get(base) || fail(`${input}: libc.so.6 ${base} is not among its version needs`);
const tooNew = new Map([...libc].filter(([name]) => newer(name)).map(([name, e]) => [e.index, name]));

// The symbols of those versions: each must be an undefined __isoc23_ alias.
const renamed = [];
for (let i = 0; i < dynsym.size / 24; i++) {
  const sym = dynsym.offset + i * 24;
  const ver = tooNew.get(buf.readUInt16LE(versym.offset + i * 2) & 0x7fff);
  if (!ver) continue;
  const name = str(buf.readUInt32LE(sym));
  const plain = name.startsWith(PREFIX) ? name.slice(PREFIX.length) : null;
  if (buf.readUInt16LE(sym + 6) !== 0 || !ALIASED.has(plain)) {
    fail(`${input}: ${name}@${ver} is not a C23 alias this script knows; not patched`);
  }
  buf.writeUInt32LE(buf.readUInt32LE(sym) + PREFIX.length, sym);
  renamed.push(`${name}@${ver} -> ${plain}@${base}`);
}
for (const name of tooNew.values()) {
  const e = libc.get(name);
  buf.writeUInt32LE(baseEntry.hash, e.at);
  buf.writeUInt32LE(baseEntry.nameOff, e.at + 8);
}
fs.writeFileSync(output, buf, { mode: fs.statSync(input).mode });
console.log(tooNew.size === 0
  ? `isoc23-compat: ${output}: needs nothing newer than glibc ${runtime}, copied unchanged`
  : `isoc23-compat: ${output}: ${renamed.join(', ')}; version need ${[...tooNew.values()].join(', ')} -> ${base}`);
