// A host link carries its signed value in the URL's fragment, which browsers never send: post it
// (with the page's CSRF token) and drop it from the address bar and the history first.
const value = decodeURIComponent(location.hash.slice(1));
if (value) {
  history.replaceState(null, "", location.pathname);
  const form = document.getElementById("host-link-form");
  form.elements.link.value = value;
  form.submit();
}
