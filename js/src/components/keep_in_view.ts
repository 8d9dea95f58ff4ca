// Keep a side panel in view while its container scrolls past: what `position: sticky` does, but
// sticky only works when no ancestor clips overflow, and notebook output areas do (JupyterLab's
// .jp-OutputArea-output has overflow: auto), so the panel is moved with a transform instead.

/** How far (px) to move a panel down inside its container so it stays in view: 0 while the
 * container's top is visible, then follow the top of the visible area, never past the bottom. */
export function stickyOffset(viewTop: number, containerTop: number, containerHeight: number, panelHeight: number): number {
  return Math.max(0, Math.min(viewTop - containerTop, containerHeight - panelHeight));
}

/** The top (client px) of the visible area around `el`: the lowest top edge of the ancestors
 * that scroll, or 0 (the window). */
export function visibleTop(el: Element): number {
  let top = 0;
  for (let a = el.parentElement; a; a = a.parentElement) {
    const style = getComputedStyle(a);
    if (/(auto|scroll)/.test(style.overflowY) && a.scrollHeight > a.clientHeight) top = Math.max(top, a.getBoundingClientRect().top);
  }
  return top;
}

/** Move `panel` (a child of `container`) so it stays in view; returns the clean-up. */
export function keepInView(panel: HTMLElement, container: HTMLElement): () => void {
  let frame = 0;
  const update = () => {
    frame = 0;
    const c = container.getBoundingClientRect();
    const y = stickyOffset(visibleTop(container), c.top, c.height, panel.offsetHeight);
    panel.style.transform = y > 0 ? `translateY(${Math.round(y)}px)` : "";
    panel.dataset.offset = String(Math.round(y));
  };
  const schedule = () => {
    if (!frame) frame = typeof requestAnimationFrame === "function" ? requestAnimationFrame(update) : (setTimeout(update, 0) as unknown as number);
  };
  document.addEventListener("scroll", schedule, true); // scroll events do not bubble: capture
  window.addEventListener("resize", schedule);
  schedule();
  return () => {
    document.removeEventListener("scroll", schedule, true);
    window.removeEventListener("resize", schedule);
  };
}
