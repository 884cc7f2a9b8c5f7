# Builds the Windows installer: the app (PyInstaller), its self-test, then the Inno Setup installer.
# Not run here (no Windows machine); see README, "Packaging".  From the repository root, in PowerShell:
#   py -3.11 -m venv .venv
#   .venv\Scripts\pip install -c constraints.txt torch        # CPU build; for NVIDIA see README, "Packaging"
#   .venv\Scripts\pip install -c constraints.txt -e ".[package]"
#   powershell -ExecutionPolicy Bypass -File packaging\windows\build.ps1
# Needs Inno Setup 6 (iscc.exe on PATH, or at its default place).
$ErrorActionPreference = "Stop"
$version = (Select-String -Path pyproject.toml -Pattern '^version = "(.*)"').Matches[0].Groups[1].Value

& .venv\Scripts\pyinstaller --noconfirm build.spec
if ($LASTEXITCODE -ne 0) { throw "pyinstaller failed" }

# Kamaal.exe is a windowed program (no console), so its report goes to %TEMP%\kamaal-self-test.txt;
# Start-Process -Wait gives us its exit code.
$test = Start-Process -FilePath dist\Kamaal\Kamaal.exe -ArgumentList "--self-test" -Wait -PassThru
Get-Content (Join-Path $env:TEMP "kamaal-self-test.txt")
if ($test.ExitCode -ne 0) { throw "the bundle's self-test failed (exit code $($test.ExitCode))" }

$iscc = (Get-Command iscc.exe -ErrorAction SilentlyContinue).Source
if (-not $iscc) { $iscc = "${env:ProgramFiles(x86)}\Inno Setup 6\ISCC.exe" }
& $iscc "/DAppVersion=$version" packaging\windows\kamaal.iss
if ($LASTEXITCODE -ne 0) { throw "iscc failed" }
