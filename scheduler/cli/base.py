"""What every command shares: the `duban` group, the --now and --format options, the App for a command."""

from __future__ import annotations

from collections.abc import Callable

import click

from rules.errors import DubanError

from .. import cli_i18n

cli_i18n.install()

FORMATS = click.Choice(["table", "json"])
# commands that never write: a far-future --now cannot leave anything behind
READ_ONLY = {"preview", "rules list", "rules show", "rules export", "calendar show", "history", "backup"}


def now_option(f: Callable) -> Callable:
    return click.option("--now", "now", metavar="时间",
                        help="假定当前时间（本地时间，ISO 格式，如 2026-12-14T09:00；只写日期按当天 12:00）。")(f)


def format_option(f: Callable) -> Callable:
    return click.option("--format", "fmt", type=FORMATS, default="table", show_default=True,
                        help="输出格式：table（中文表格）或 json（供脚本使用）。")(f)


def _option_text(value: str | None, option: str, limit: int, multiline: bool = False) -> str | None:
    """A text option as typed, refused when it has control characters or is too long (as in rule files)."""
    from rules.text import text_problem

    problem = None if value is None else text_problem(value, limit, multiline)
    if problem:
        raise DubanError(f"{option} {problem}")
    return value


def _app(now: str | None):
    from rules.model import ID_RE

    from ..app import App

    ctx = click.get_current_context().find_root()
    org = ctx.params.get("org") or "default"
    if not ID_RE.match(org):
        raise DubanError(f"单位 id“{org}”无效：只能用小写英文字母、数字和连字符，例如 branch-01")
    limited = ctx.get_parameter_source("org") not in (None, click.core.ParameterSource.DEFAULT)
    app = App(now, org=org, org_limited=limited)  # reads .env
    if now is not None and click.get_current_context().command_path.partition(" ")[2] not in READ_ONLY:
        from ..clock import check_far_ahead

        check_far_ahead(app.now, allowed=ctx.params.get("force") or app.settings.get("DUBAN_TEST_MODE") == "1")
    from ..logs import setup_logging

    # every command logs warnings (failed sends…) to stderr, redacted; the service logs INFO by default
    setup_logging(app.settings.get("DUBAN_LOG_LEVEL") or ("INFO" if ctx.invoked_subcommand == "run" else "WARNING"))
    return app


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
             options_metavar="[选项]", subcommand_metavar="命令 [参数]...")
@click.version_option(package_name="duban", message="duban %(version)s")
@click.option("--org", envvar="DUBAN_ORG", default="default", show_default=True, metavar="单位",
              help="只处理这个单位（支部）的规则、人员和事项；一个单位使用时不用写。也可设 DUBAN_ORG。")
@click.option("--force", is_flag=True, help="允许写入数据的命令使用比现在晚一年以上的 --now（正式数据库上慎用）。")
@click.pass_context
def cli(ctx: click.Context, org: str, force: bool) -> None:
    """督办（duban）：把整改承诺和周期性工作变成按时提醒、逾期督办和可查台账。

    \b
    常用流程：
      duban init                          创建数据库并载入内置规则包
      duban rules import 规则.yaml         导入或更新规则
      duban preview --from 2026-12-01 --to 2027-03-31   预览到期日和提醒时间
    所有命令都支持 --now 假定当前时间；设置写在 .env 中（见 .env.example）。
    """
