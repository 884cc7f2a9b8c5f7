; Inno Setup script for the Windows installer (not built or run here: no Windows machine; see README, "Packaging").
; Build the app first (packaging/windows/build.ps1 does all three steps):
;   .venv\Scripts\pyinstaller --noconfirm build.spec          -> dist\Kamaal\Kamaal.exe (windowed, no console)
;   dist\Kamaal\Kamaal.exe --self-test                         -> exit code 0; report in %TEMP%\kamaal-self-test.txt
;   iscc /DAppVersion=0.1.0 packaging\windows\kamaal.iss       -> dist\Kamaal-0.1.0-windows-x64-setup.exe
;
; Per-user install by default (no administrator rights needed; the user may choose all users).  The
; installed folder holds only the app: settings, projects and caches live in %APPDATA%\Kamaal (Qt's
; AppDataLocation), which neither an upgrade nor an uninstall touches, so settings survive upgrades.
; AppId is fixed forever: it is how an upgrade finds (and replaces) the previous version.

#ifndef AppVersion
  #define AppVersion "0.0.0"
#endif
#define SourceDir "..\..\dist\Kamaal"

[Setup]
AppId={{6F1D8C3A-2B4E-4C8F-9A57-3E2D1B0C9F41}
AppName=Kamaal
AppVersion={#AppVersion}
AppPublisher=Kamaal
DefaultDirName={autopf}\Kamaal
DefaultGroupName=Kamaal
DisableProgramGroupPage=yes
PrivilegesRequired=lowest
PrivilegesRequiredOverridesAllowed=dialog
ArchitecturesAllowed=x64compatible
ArchitecturesInstallIn64BitMode=x64compatible
OutputDir=..\..\dist
OutputBaseFilename=Kamaal-{#AppVersion}-windows-x64-setup
; torch with CUDA is gigabytes: the strongest compression pays for itself in download time.
Compression=lzma2/ultra64
SolidCompression=yes
LZMAUseSeparateProcess=yes
DiskSpanning=no
WizardStyle=modern
UninstallDisplayIcon={app}\Kamaal.exe
CloseApplications=yes

[Tasks]
Name: "desktopicon"; Description: "{cm:CreateDesktopIcon}"; GroupDescription: "{cm:AdditionalIcons}"; Flags: unchecked

[InstallDelete]
; An upgrade replaces the whole bundle: files a newer torch no longer ships must not linger and be loaded.
Type: filesandordirs; Name: "{app}\_internal"

[Files]
Source: "{#SourceDir}\*"; DestDir: "{app}"; Flags: ignoreversion recursesubdirs createallsubdirs

[Icons]
Name: "{autoprograms}\Kamaal"; Filename: "{app}\Kamaal.exe"
Name: "{autodesktop}\Kamaal"; Filename: "{app}\Kamaal.exe"; Tasks: desktopicon

[Run]
Filename: "{app}\Kamaal.exe"; Description: "{cm:LaunchProgram,Kamaal}"; Flags: nowait postinstall skipifsilent
