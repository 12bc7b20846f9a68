// Loads the chat's WebAssembly module. The relay's Content-Security-Policy forbids inline
// scripts, so this file replaces trunk's inline loader; trunk writes the hashed names of the
// generated JavaScript and WebAssembly into the <meta name="dropthat-module"> element.
const names = document.querySelector('meta[name="dropthat-module"]');
const bindings = await import(names.dataset.js);
await bindings.default({ module_or_path: names.dataset.wasm });
