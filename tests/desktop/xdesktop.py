"""A person at the X display: mouse moves, clicks, the wheel and the keyboard through `xdotool`, screenshots with
ImageMagick's `import`, and eyes in the form of the state that `observe.py` writes from inside QGIS."""
from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path


class Desktop:
    """Input and screenshots on one X display, and waiting for what QGIS shows."""

    def __init__(self, display: str, status: Path, shots: Path, qgis: subprocess.Popen, log: Path):
        self.display, self.status, self.shots, self.qgis, self.log = display, status, shots, qgis, log
        self.taken: list[Path] = []
        self.timeline: list[tuple[str, float]] = []  # (screenshot, seconds since the start)
        self.start = time.monotonic()

    # -- what QGIS shows --------------------------------------------------------------------------------------
    def state(self) -> dict:
        try:
            return json.loads(self.status.read_text())
        except (OSError, ValueError):
            return {}

    def wait(self, check, timeout: float, what: str) -> dict:
        """The first state for which `check(state)` holds; fails with what QGIS showed last."""
        end = time.monotonic() + timeout
        state = {}
        while time.monotonic() < end:
            state = self.state()
            if state.get("errors"):
                raise AssertionError(f"the observer inside QGIS failed: {state['errors'][-1]}")
            python_errors = [m for m in state.get("log", []) if m.startswith("Python error")]
            if python_errors:
                raise AssertionError(f"QGIS logged a Python error waiting for {what}: {python_errors[0]}")
            try:
                if state and check(state):
                    return state
            except (KeyError, TypeError, IndexError):
                pass
            if self.qgis.poll() is not None:
                raise AssertionError(f"QGIS exited ({self.qgis.returncode}) waiting for {what}: "
                                     f"{self.log.read_text()[-3000:]}")
            time.sleep(0.3)
        shot = self.shot(f"timeout-{what.replace(' ', '-')[:40]}")
        raise AssertionError(f"QGIS did not show {what} in {timeout:.0f} s (screenshot {shot}); messages: "
                             f"{state.get('messages')}; "
                             f"dock: {json.dumps((state.get('dock') or {}).get('widgets'))[:3000]}")

    def command(self, word: str) -> None:
        """Ask the observer for harness work after the session: 'unload' the plugin, 'quit' QGIS."""
        self.status.with_name("command").write_text(word)

    def widget(self, name: str, state: dict | None = None) -> dict:
        return ((state or self.state()).get("dock") or {}).get("widgets", {}).get(name) or {}

    # -- hands ------------------------------------------------------------------------------------------------
    def xdotool(self, *args) -> None:
        subprocess.run(["xdotool", *map(str, args)], check=True, timeout=30, env={"DISPLAY": self.display})

    def move(self, x: float, y: float) -> None:
        self.xdotool("mousemove", "--sync", int(x), int(y))

    def click(self, x: float, y: float, button: int = 1, repeat: int = 1) -> None:
        self.move(x, y)
        time.sleep(0.15)
        self.xdotool("click", "--repeat", repeat, "--delay", 120, button)
        time.sleep(0.3)

    def click_rect(self, r: list[int], dx: float = 0.5, button: int = 1) -> None:
        """Click inside a rectangle [x, y, w, h], `dx` of the way across, half-way down."""
        self.click(r[0] + dx * r[2], r[1] + r[3] / 2, button)

    def wheel(self, x: float, y: float, notches: int) -> None:
        """Turn the wheel over (x, y): positive notches scroll down."""
        self.move(x, y)
        time.sleep(0.15)
        for _ in range(abs(notches)):
            self.xdotool("click", 5 if notches > 0 else 4)
            time.sleep(0.1)
        time.sleep(0.3)

    def key(self, *keys: str) -> None:
        self.xdotool("key", "--delay", 80, *keys)
        time.sleep(0.2)

    def type(self, text: str) -> None:
        self.xdotool("type", "--delay", 40, text)
        time.sleep(0.2)

    # -- the dock, as a person uses it --------------------------------------------------------------------------
    def show_in_dock(self, name: str) -> dict:
        """Scroll the dock with the mouse wheel, over its margin and never over a box, until the input `name` is
        well inside the view; its state."""
        for _ in range(40):
            state = self.state()
            scroll, w = state["dock"]["scroll"], self.widget(name, state)
            view = scroll["view"]
            top = w["y"] - scroll["value"]  # the input's top in the view
            if w.get("rect") and 20 <= top <= view[3] - w["rect"][3] - 20:
                return w
            down = top > view[3] / 2
            if (down and scroll["value"] >= scroll["max"]) or (not down and scroll["value"] <= 0):
                if w.get("rect") and w["rect"][3] >= 10:
                    return w
                raise AssertionError(f"{name} is not on screen and the dock cannot scroll further")
            self.wheel(view[0] + 4, view[1] + view[3] / 2, 2 if down else -2)
        raise AssertionError(f"could not scroll the dock to {name}")

    def press(self, name: str) -> None:
        self.click_rect(self.show_in_dock(name)["rect"])

    def choose(self, name: str, item: str, timeout: float = 10) -> None:
        """Open a combo box in the dock with a click and click one of its entries."""
        w = self.show_in_dock(name)
        self.click_rect(w["rect"], 0.92 if "edit_rect" in w else 0.5)  # an editable box opens on its arrow
        popup = self.wait(lambda s: s["popup"] and item in s["popup"]["items"], timeout, f"the {item!r} entry")
        self.click_rect(popup["popup"]["items"][item])
        self.wait(lambda s: self.widget(name, s)["text"] == item, timeout, f"{name} set to {item!r}")

    def fill(self, name: str, text: str) -> None:
        """Click into a text field (a line edit, a spin box, an editable box) and type over its text."""
        w = self.show_in_dock(name)
        self.click_rect(w.get("edit_rect") or w["rect"], 0.3)
        self.key("ctrl+a")
        self.type(text)

    def shot(self, name: str) -> Path:
        """A screenshot of the whole screen once the map is drawn, numbered in the order taken."""
        end = time.monotonic() + 20
        while self.state().get("canvas", {}).get("drawing") and time.monotonic() < end:
            time.sleep(0.2)
        time.sleep(0.5)
        self.timeline.append((name, time.monotonic() - self.start))
        self.shots.mkdir(parents=True, exist_ok=True)
        path = self.shots / f"{len(self.taken) + 1:02d}-{name}.png"
        subprocess.run(["import", "-display", self.display, "-window", "root", str(path)], check=True, timeout=60)
        self.taken.append(path)
        return path
