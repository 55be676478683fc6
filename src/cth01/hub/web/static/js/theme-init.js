// Runs before the first paint: the saved theme (dark unless the user chose light).
try {
  if (localStorage.getItem("cth01-theme") === "light") {
    document.documentElement.dataset.theme = "light";
  }
} catch (e) { /* storage blocked: keep the dark default */ }
