"""The opt-out list by hand: `status optout add|remove|list|import` and the
web service's /api/optouts, on the real MariaDB (and Redis for the web
service), and a phone added either way is not messaged."""

import json

import pytest
import requests

from common.store.campaign import FAILED, SENT
from tests.conftest import drain
from tests.integration.test_status import run_status, status
from tests.integration.test_web import AUTH, web  # noqa: F401  (the service as a process, DEFAULT_REGION=ID)

pytestmark = pytest.mark.integration


def listed(campaign) -> dict[str, tuple[str, str]]:
    return {
        phone: (reason, source)
        for phone, reason, source in campaign.query("SELECT phone, reason, source FROM opt_outs")
    }


def test_add_normalises_phones_and_list_masks_them_unless_asked(campaign, role_env):
    out = status(role_env, "optout", "add", "+62 812-3456-7890", "081234567891", "--default-region", "ID")
    assert out.strip() == "added 2 phones to the opt-out list"
    assert listed(campaign) == {
        "6281234567890": ("added by hand", "status"),
        "6281234567891": ("added by hand", "status"),
    }
    again = status(dict(role_env, DEFAULT_REGION="ID"), "optout", "add", "0812 3456 7890", "--reason", "complaint")
    assert again.strip() == "added 0 phones to the opt-out list, 1 already there"
    assert listed(campaign)["6281234567890"] == ("added by hand", "status")  # keeps its first reason

    lines = status(role_env, "optout", "list").splitlines()
    assert lines[0] == "2 phones on the opt-out list:" and lines[1].split() == ["phone", "source", "since", "reason"]
    assert sorted(line.split()[0] for line in lines[2:]) == ["62*********90", "62*********91"]
    assert all(line.split()[1] == "status" and line.endswith("added by hand") for line in lines[2:])
    assert "6281234567890" not in "\n".join(lines)
    full = status(role_env, "optout", "list", "--show-phones", "--limit", "1").splitlines()
    assert full[0] == "2 phones on the opt-out list, the latest 1:" and len(full) == 3
    assert full[2].split()[0] in ("6281234567890", "6281234567891")
    assert status(dict(role_env, SHOW_PHONES="1"), "optout", "list").count("628123456789") == 2


@pytest.mark.parametrize("command", ["add", "remove"])
def test_an_invalid_phone_is_one_line_exit_2_and_nothing_changes(campaign, role_env, command):
    status(role_env, "optout", "add", "+6281234567890")
    result = run_status(role_env, "optout", command, "+6281234567891", "0812", "+6281234567890")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip() == (
        "status: error: phone 2 of 3 is not a number to message: phone is a national number and no default "
        "region is set (DEFAULT_REGION); nothing changed"
    )
    assert list(listed(campaign)) == ["6281234567890"]
    bad_region = run_status(role_env, "optout", command, "+6281234567891", "--default-region", "XX")
    assert bad_region.returncode == 2 and "DEFAULT_REGION" in bad_region.stderr
    assert list(listed(campaign)) == ["6281234567890"]


def test_remove_takes_phones_off_and_says_which_were_not_on(campaign, role_env):
    status(role_env, "optout", "add", "+6281234567890", "+6281234567891")
    out = status(role_env, "optout", "remove", "6281234567890", "+62 812 3456 7899")
    assert out.strip() == "removed 1 phone from the opt-out list, 1 not on it"
    assert list(listed(campaign)) == ["6281234567891"]
    assert status(role_env, "optout", "list").startswith("1 phone on the opt-out list:")


def test_import_reads_phones_or_a_csv_first_column_and_reports_each_invalid_line(campaign, role_env, tmp_path):
    status(role_env, "optout", "add", "+6281234567899")
    file = tmp_path / "optouts.csv"
    file.write_text(
        "# exported from the CRM\n"  # 1
        "phone,name\n"  # 2: a header is no phone
        "\n"  # 3
        "+62 812-3456-7890,Ana\n"  # 4
        '"081234567891","Budi, Jr."\n'  # 5: national, DEFAULT_REGION=ID
        "6281234567890\n"  # 6: repeated
        "   # indented comment\n"  # 7
        "6281234567899\n"  # 8: already on the list
        "12ab\n"  # 9
    )
    result = run_status(dict(role_env, DEFAULT_REGION="ID"), "optout", "import", str(file))
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "added 2 phones, 1 already there, 1 repeated in the file, 2 invalid",
        "line 2: phone has characters other than digits, spaces, dashes, dots, brackets and a leading +",
        "line 9: phone has characters other than digits, spaces, dashes, dots, brackets and a leading +",
    ]
    assert listed(campaign) == {
        "6281234567890": ("imported", "import"),
        "6281234567891": ("imported", "import"),
        "6281234567899": ("added by hand", "status"),
    }
    missing = run_status(role_env, "optout", "import", str(tmp_path / "nope.txt"))
    assert missing.returncode == 2 and "does not exist" in missing.stderr and "Traceback" not in missing.stderr


def test_a_phone_added_by_hand_is_not_messaged_and_counts_as_opted_out(campaign, role_env, build, mock):
    producer, consumer = build
    ids = campaign.add(6)  # odd ids: 1, 3, 5
    status(role_env, "optout", "add", "+62 812 0000 0002")  # row 3's phone (i = 2)
    producer().loop()
    drain(consumer())
    assert campaign.states()[ids[2]] == FAILED and campaign.failure_reasons() == {ids[2]: "opted out"}
    assert [campaign.states()[i] for i in (ids[0], ids[4])] == [SENT, SENT]
    assert sorted(mock.recipients()) == ["6281200000000", "6281200000004"]
    after = json.loads(status(role_env, "--json"))["after_sending"]
    assert after["partitions"][1]["opted_out"] == after["total"]["opted_out"] == 1
    assert after["partitions"][0]["opted_out"] == 0


def test_the_api_lists_adds_and_removes_opt_outs_behind_basic_auth(web, campaign):  # noqa: F811
    assert requests.get(f"{web}/api/optouts", timeout=5).status_code == 401
    assert requests.post(f"{web}/api/optouts", json={"phones": ["+6281234567890"]}, timeout=5).status_code == 401
    assert requests.post(f"{web}/api/optouts/remove", json={"phones": ["+6281234567890"]}, timeout=5).status_code == 401
    assert listed(campaign) == {}

    added = requests.post(
        f"{web}/api/optouts",
        auth=AUTH,
        json={"phones": ["+62 812-3456-7890", "081234567891"], "reason": "asked"},
        timeout=5,
    )
    assert added.status_code == 200 and added.json() == {"added": 2, "already_listed": 0}
    again = requests.post(f"{web}/api/optouts", auth=AUTH, json={"phones": ["6281234567890"]}, timeout=5)
    assert again.json() == {"added": 0, "already_listed": 1}
    assert listed(campaign) == {"6281234567890": ("asked", "api"), "6281234567891": ("asked", "api")}

    answer = requests.get(f"{web}/api/optouts", auth=AUTH, timeout=5).json()
    assert answer["total"] == 2 and {e["phone"] for e in answer["optouts"]} == {"6281234567890", "6281234567891"}
    assert all(e["reason"] == "asked" and e["source"] == "api" and e["created_at"] for e in answer["optouts"])
    assert len(requests.get(f"{web}/api/optouts", auth=AUTH, params={"limit": 1}, timeout=5).json()["optouts"]) == 1
    assert requests.get(f"{web}/api/optouts", auth=AUTH, params={"limit": 0}, timeout=5).status_code == 400

    invalid = requests.post(f"{web}/api/optouts", auth=AUTH, json={"phones": ["+6281234567892", "12ab"]}, timeout=5)
    assert invalid.status_code == 400 and invalid.json()["error"].startswith("phone 1:")
    form = requests.post(f"{web}/api/optouts", auth=AUTH, data={"phones": "+6281234567892"}, timeout=5)
    assert form.status_code == 415
    assert len(listed(campaign)) == 2  # neither added anything

    removed = requests.post(
        f"{web}/api/optouts/remove", auth=AUTH, json={"phones": ["081234567891", "+6281234567899"]}, timeout=5
    )
    assert removed.status_code == 200 and removed.json() == {"removed": 1, "not_listed": 1}
    assert list(listed(campaign)) == ["6281234567890"]
