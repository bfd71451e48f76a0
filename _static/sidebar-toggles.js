/* The ☰ and "on this page" buttons in the article header open the sidebars, on a phone too.
 *
 * pydata-sphinx-theme 0.17 (pulled in by sphinx-book-theme 1.3) hooks its sidebar dialogs to
 * the *first* `.primary-toggle` / `.secondary-toggle` in the page only (its issue 2451). That
 * first button sits in the theme's top bar, which this book hides (custom.css); the visible
 * buttons in the article header got no handler and did nothing. Each of them now forwards
 * its click to the first button, whose handlers open the sidebar as a dialog on narrow
 * screens and fold it away on wide ones.
 */
document.addEventListener("DOMContentLoaded", () => {
  for (const selector of [".primary-toggle", ".secondary-toggle"]) {
    const [bound, ...others] = document.querySelectorAll(selector);
    if (!bound) continue;
    for (const button of others) {
      button.addEventListener("click", (event) => {
        event.preventDefault();
        event.stopPropagation();
        bound.click();
      });
    }
  }
});
