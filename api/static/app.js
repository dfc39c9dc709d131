// CE4BIG Exchange: every page works without this file. With it, htmx requests carry the
// page's CSRF token as a header (the forms carry it as a field too).
document.addEventListener("htmx:configRequest", (event) => {
  const token = document.querySelector('meta[name="csrf-token"]');
  if (token) {
    event.detail.headers["X-CSRF-Token"] = token.content;
  }
});
