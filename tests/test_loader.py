"""The loader's pure parts: the order files deploy in."""

from __future__ import annotations

from pathlib import Path

from daemon._loader import deploy_order


class TestDeployOrder:
    def test_helpers_come_before_the_files_importing_them(self) -> None:
        """A file is ordered after every file it imports."""
        user, helper = Path("user.py"), Path("helper.py")
        ordered, cyclic = deploy_order({user: ["helper", "json"], helper: []})
        assert ordered == [helper, user]
        assert cyclic == []

    def test_every_cycle_is_reported(self) -> None:
        """With two separate cycles, all their files are cyclic and the rest ordered."""
        a, b, c, d, e = (Path(f"{stem}.py") for stem in "abcde")
        ordered, cyclic = deploy_order({a: ["b"], b: ["a"], c: ["d"], d: ["c"], e: []})
        assert ordered == [e]
        assert cyclic == [a, b, c, d]

    def test_a_file_importing_a_cycle_is_still_ordered(self) -> None:
        """A file outside a cycle that imports into it is ordered (its load then decides)."""
        a, b, user = Path("a.py"), Path("b.py"), Path("user.py")
        ordered, cyclic = deploy_order({a: ["b"], b: ["a"], user: ["a"]})
        assert ordered == [user]
        assert cyclic == [a, b]
