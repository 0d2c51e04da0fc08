// The page half of dist/site's service-worker shim (scripts/site --sw): on a
// host that sends no COOP/COEP headers (GitHub Pages), registers coi-sw.js,
// which adds them to this site's own responses, and reloads the page once
// it is in control, so that the page is cross-origin isolated and the worker
// can run the threaded build. A classic script before app.js. Where the
// headers already arrive (Netlify, Cloudflare Pages) it does nothing; where
// service workers are unavailable (not a secure context, blocked) the page
// stays single-threaded and says why, as without the shim.
(() => {
  if (self.crossOriginIsolated || !("serviceWorker" in navigator) || !self.isSecureContext) return;
  const tried = "patchlab-coi-reloaded";
  navigator.serviceWorker.register("coi-sw.js").then(
    (reg) => {
      // controlled and still not isolated: the shim cannot help, never loop
      if (navigator.serviceWorker.controller) {
        if (sessionStorage.getItem(tried)) console.warn("patchlab: the service worker is active but the page is not cross-origin isolated");
        sessionStorage.setItem(tried, "1");
        return;
      }
      if (sessionStorage.getItem(tried)) return;
      const reload = () => {
        sessionStorage.setItem(tried, "1");
        location.reload();
      };
      if (reg.active) reload();
      else navigator.serviceWorker.addEventListener("controllerchange", reload, { once: true });
    },
    (e) => console.warn(`patchlab: no service worker (${e.message}): the page runs single-threaded`),
  );
})();
