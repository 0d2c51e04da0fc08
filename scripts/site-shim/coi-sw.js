// The service worker of dist/site's shim (scripts/site --sw): adds the
// headers that make a page cross-origin isolated (COOP + COEP, as _headers
// asks of Netlify) to every response from this site's own origin, so the lab
// can run its threaded build on a host that cannot send headers (GitHub
// Pages). Other origins' responses (the Hugging Face Hub) pass untouched:
// they are CORS fetches, which require-corp accepts. Nothing is cached.
self.addEventListener("install", () => self.skipWaiting());
self.addEventListener("activate", (e) => e.waitUntil(self.clients.claim()));

self.addEventListener("fetch", (e) => {
  const req = e.request;
  if (new URL(req.url).origin !== self.location.origin) return;
  if (req.cache === "only-if-cached" && req.mode !== "same-origin") return;
  e.respondWith(
    fetch(req).then((res) => {
      if (res.status === 0 || res.type === "opaqueredirect") return res;
      const headers = new Headers(res.headers);
      headers.set("Cross-Origin-Opener-Policy", "same-origin");
      headers.set("Cross-Origin-Embedder-Policy", "require-corp");
      headers.set("Cross-Origin-Resource-Policy", "cross-origin");
      return new Response(res.body, { status: res.status, statusText: res.statusText, headers });
    }),
  );
});
