"""The `duban` command line. Thin: parse, call the application layer, print. Errors become Chinese
messages here, once (`main`). One module per command group; `base` holds what they share."""

from __future__ import annotations

import sys

import click

from rules.errors import DubanError

from . import calendar, duties, ledger, rules, service, setup, web  # noqa: F401 - each registers its commands
from .base import cli

__all__ = ["cli", "console_main", "main"]


def _chinese_metavars(group: click.Group) -> None:
    """`[OPTIONS]` and `COMMAND [ARGS]...` in every usage line, in Chinese."""
    for cmd in group.commands.values():
        cmd.options_metavar = "[选项]"
        if isinstance(cmd, click.Group):
            cmd.subcommand_metavar = "命令 [参数]..."
            _chinese_metavars(cmd)


_chinese_metavars(cli)


# --- entry point -----------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    """Run the CLI; every user error is one Chinese message on stderr and a non-zero exit code."""
    try:
        code = cli.main(args=argv, prog_name="duban", standalone_mode=False)
        if isinstance(code, int):
            return code
    except DubanError as e:
        from rules.text import clean_text

        # messages quote what the user wrote: never let it move the cursor or recolour the terminal
        click.echo(f"错误：{clean_text(e.message, multiline=True)}", err=True)
        return e.exit_code
    except click.exceptions.Abort:
        click.echo("已取消。", err=True)
        return 130
    except click.ClickException as e:
        e.show()
        return 2
    except KeyboardInterrupt:
        return 130
    except Exception as e:  # a bug or an environment problem: one line, the traceback only at DEBUG
        import os

        from sqlalchemy.exc import SQLAlchemyError

        if os.environ.get("DUBAN_LOG_LEVEL", "").upper() == "DEBUG":
            import traceback

            from notifications.redact import redact

            click.echo(redact(traceback.format_exc()), err=True)  # the details, without any secret
            return 1
        if isinstance(e, SQLAlchemyError):
            orig = getattr(e, "orig", None)
            click.echo(f"错误：数据库操作失败（{type(orig or e).__name__}：{str(orig or e).splitlines()[0][:200]}）。"
                       "请检查 DUBAN_DATABASE_URL 和数据库服务。", err=True)
        else:
            from notifications.redact import redact

            click.echo(f"错误：程序内部出错（{type(e).__name__}：{redact(str(e))[:200]}）。"
                       "设置 DUBAN_LOG_LEVEL=DEBUG 后重试可看到详细信息，请报告给维护者。", err=True)
        return 1
    return 0


def console_main() -> None:
    import gc

    # a command makes many small objects and few cycles: collect rarely (measured: ~30 % faster)
    gc.set_threshold(100_000, 50, 100)
    sys.exit(main())


if __name__ == "__main__":
    console_main()
