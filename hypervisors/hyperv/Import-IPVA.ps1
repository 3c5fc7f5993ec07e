<#
.SYNOPSIS
  Creates the innovaphone Virtual Appliance as a Hyper-V Generation 1 VM.
.DESCRIPTION
  Copies the four VHDX disks in 'Virtual Hard Disks' beside this script to -Path and creates a Gen1 VM with static
  memory, one vCPU, the disks on IDE 0/0 (boot), 0/1 (CF), 1/0 (flash), 1/1 (dump), a
  legacy network adapter on -SwitchName and COM1 on a named pipe (the console).
  Safe to re-run: an existing VM of that name is left alone; disks already copied are kept.
.EXAMPLE
  .\Import-IPVA.ps1 -SwitchName "External" -Name ipva1 -Path D:\VMs\ipva1
#>
[CmdletBinding()]
param(
    [Parameter(Mandatory = $true)][string]$SwitchName,
    [string]$Name = "@NAME@",
    [string]$Path = "",
    [string]$PipeName = "",
    [int]$MemoryMiB = @RAM_MIB@,
    [string]$MacAddress = "@MAC@"
)
$ErrorActionPreference = 'Stop'
Set-StrictMode -Version Latest

$Disks = @(
    @{ File = 'hd-boot.vhdx';  Controller = 0; Location = 0 },
    @{ File = 'hd-cf.vhdx';    Controller = 0; Location = 1 },
    @{ File = 'hd-flash.vhdx'; Controller = 1; Location = 0 },
    @{ File = 'hd-dump.vhdx';  Controller = 1; Location = 1 }
)

if (-not (Get-Command -Name New-VM -ErrorAction SilentlyContinue)) {
    throw "The Hyper-V PowerShell module is missing: Enable-WindowsOptionalFeature -Online -FeatureName Microsoft-Hyper-V-Management-PowerShell"
}
if (-not (Get-VMSwitch -Name $SwitchName -ErrorAction SilentlyContinue)) {
    $known = (Get-VMSwitch | ForEach-Object { $_.Name }) -join ', '
    throw "Virtual switch '$SwitchName' not found. Existing switches: $known"
}
if ($MacAddress -and $MacAddress -notmatch '^[0-9A-Fa-f]{12}$') {
    throw "MacAddress must be 12 hex digits (e.g. 009033123456), got '$MacAddress'"
}
if (-not $Path) { $Path = Join-Path (Get-VMHost).VirtualHardDiskPath $Name }
if (-not $PipeName) { $PipeName = "\\.\pipe\$Name-com1" }

if (Get-VM -Name $Name -ErrorAction SilentlyContinue) {
    Write-Host "VM '$Name' exists already: nothing changed. Remove it first (Remove-VM '$Name') to re-create it."
    return
}

foreach ($d in $Disks) {
    $src = Join-Path (Join-Path $PSScriptRoot 'Virtual Hard Disks') $d.File
    if (-not (Test-Path -LiteralPath $src)) { throw "Disk $src missing: unpack the whole zip first" }
}
New-Item -ItemType Directory -Force -Path $Path | Out-Null
foreach ($d in $Disks) {
    $dst = Join-Path $Path $d.File
    if (Test-Path -LiteralPath $dst) {
        Write-Host "keeping existing $dst"
    } else {
        Copy-Item -LiteralPath (Join-Path (Join-Path $PSScriptRoot 'Virtual Hard Disks') $d.File) -Destination $dst
        Write-Host "copied $($d.File) to $Path"
    }
}

$vm = New-VM -Name $Name -Generation 1 -MemoryStartupBytes ($MemoryMiB * 1MB) -NoVHD -Path $Path
try {
    Set-VM -VM $vm -StaticMemory -ProcessorCount 1
    # Gen1 comes with a synthetic NIC and a DVD drive on IDE 1/0: the appliance needs
    # neither, and IDE 1/0 is the flash disk's slot
    Get-VMNetworkAdapter -VM $vm | Remove-VMNetworkAdapter
    Get-VMDvdDrive -VM $vm | Remove-VMDvdDrive
    $nic = @{ VM = $vm; IsLegacy = $true; SwitchName = $SwitchName; Name = 'Legacy Network Adapter' }
    if ($MacAddress) { $nic.StaticMacAddress = $MacAddress }
    Add-VMNetworkAdapter @nic
    foreach ($d in $Disks) {
        Add-VMHardDiskDrive -VM $vm -ControllerType IDE -ControllerNumber $d.Controller `
            -ControllerLocation $d.Location -Path (Join-Path $Path $d.File)
    }
    Set-VMComPort -VM $vm -Number 1 -Path $PipeName
    Set-VMBios -VM $vm -StartupOrder @('IDE', 'LegacyNetworkAdapter', 'CD', 'Floppy')
} catch {
    Write-Warning "Creating '$Name' failed; removing the half-made VM (disks stay in $Path)."
    Remove-VM -VM $vm -Force
    throw
}

Write-Host "Created Gen1 VM '$Name': $MemoryMiB MiB static, 1 vCPU, legacy NIC on '$SwitchName', COM1 on $PipeName"
foreach ($d in $Disks) { Write-Host ("  IDE {0}/{1}: {2}" -f $d.Controller, $d.Location, $d.File) }
Write-Host "Start it with: Start-VM -Name '$Name'"
