// A question the guard answers before an action that cannot be taken back quietly (a site-wide lockdown,
// fire mode on or off): the page's own dialog, so it is in the guard's language and cannot be muted.
import { t } from "/console/lang.js";

export function ask(question) {
  const dlg = document.getElementById("confirm");
  document.getElementById("confirm-text").textContent = question;
  return new Promise((resolve) => {
    const done = (yes) => {
      dlg.close();
      ok.removeEventListener("click", yesFn);
      no.removeEventListener("click", noFn);
      dlg.removeEventListener("cancel", noFn);
      resolve(yes);
    };
    const ok = document.getElementById("confirm-ok");
    const no = document.getElementById("confirm-cancel");
    const yesFn = () => done(true);
    const noFn = (ev) => { ev.preventDefault(); done(false); };
    ok.textContent = t("confirm");
    no.textContent = t("cancel");
    ok.addEventListener("click", yesFn);
    no.addEventListener("click", noFn);
    dlg.addEventListener("cancel", noFn);  // Escape
    dlg.showModal();
    no.focus();  // the safe answer is the default
  });
}
